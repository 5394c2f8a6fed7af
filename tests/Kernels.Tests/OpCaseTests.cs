using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

/// <summary>
/// Every op's case at every one of its shapes (<see cref="CaseCatalog"/>: the same checks `engine check kernels`
/// runs on a GPU host), each its own test, on the test device and on the 16-thread-group CPU device: the
/// engine's launcher on poisoned outputs against the float64 reference, with the case's tolerance. The ops'
/// own test classes keep what only one op has (other tunings and versions, hand-worked values, aliasing,
/// finite differences of the references, argument checks).
/// </summary>
public class OpCaseTests
{
    private static readonly Lazy<Dictionary<string, CaseCheck>> Catalog = new(() => CaseCatalog.Checks(large: false).ToDictionary(c => c.Id));

    public static TheoryData<string> Checks() => new(CaseCatalog.Checks(large: false).Select(c => c.Id));

    [Theory]
    [MemberData(nameof(Checks))]
    public void Matches_reference(string check) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        CheckResult r = Catalog.Value[check].Run(dev, rng);
        Assert.True(r.Passed, $"{r} (seed {seed})");
    });

    /// <summary>The catalog covers every op of a training step (a case that forgot ICheckedCase would drop out of the tests and of `engine check kernels` alike).</summary>
    [Fact]
    public void Catalog_covers_every_op_of_a_training_step()
    {
        var ops = CaseCatalog.Checks(large: false).Select(c => c.Op).ToHashSet();
        foreach (string op in new[]
                 {
                     "augment", "conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weight", "batchnorm_fwd_train", "batchnorm_bwd", "batchnorm_relu_fwd_train",
                     "batchnorm_relu_bwd", "batchnorm_add_relu_fwd_train", "batchnorm_add_relu_bwd", "relu_fwd", "relu_bwd", "add_fwd", "maxpool_fwd",
                     "maxpool_bwd", "avgpool_fwd", "avgpool_bwd", "linear_fwd", "linear_bwd", "softmax_xent_fwd", "softmax_xent_bwd", "sgd_step",
                 })
        {
            Assert.Contains(op, ops);
        }
        Assert.True(CaseCatalog.Checks(large: true).Count > CaseCatalog.Checks(large: false).Count);
    }
}
