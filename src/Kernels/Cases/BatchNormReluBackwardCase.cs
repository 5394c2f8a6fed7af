using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>Backward of a bn -> relu pair given the pair's output y (the ReLU mask) and dy, the gradient of y.</summary>
public delegate void BatchNormReluBackwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> gamma,
    ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dx, ArrayView<float> dgamma, ArrayView<float> dbeta, int n, int c, int hw);

/// <summary>
/// Backward of the bn -> relu pair: dx, dgamma, dbeta from x, the pair's output y, dy and the saved
/// statistics. A variant may mask dy in place (bn then relu does): masking again with the same y
/// changes nothing, so reruns see the same operands.
/// </summary>
public sealed class BatchNormReluBackwardCase(Device dev, Random rng, BatchNormShape s, int sets = 1)
    : BatchNormGradCase<BatchNormReluBackwardLauncher>(dev, rng, OpName, s, OpCost.BatchNormReluBackward(s.Length), sets, withY: true,
        (x, gamma) =>
        {
            var (rm, rv) = FreshRunningStatistics(s.C);
            return BatchNorm2d.Reference.ForwardTrainRelu(x, gamma, CaseInputs.D(BatchNormCase.Beta(rng, s.C)), rm, rv, s.N, s.C, s.HW);
        }),
    ICheckedCase
{
    public const string OpName = "batchnorm_relu_bwd";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in CaseCheck.Sizes(BatchNormCase.Shapes, BatchNormCase.LargeShapes, large)
        select CaseCheck.Of(OpName, s, (d, r) => new BatchNormReluBackwardCase(d, r, s), Default);

    private BatchNorm2d.Reference.BackwardResult? _expected;

    public static BatchNormReluBackwardLauncher Default => BatchNorm2d.BackwardRelu;

    public override void Launch(BatchNormReluBackwardLauncher launcher, int set)
        => launcher(Dev, X[set], Y[set], Dy[set], Gamma, SaveMean[set], SaveInvStd[set], Dx[set], Dgamma[set], Dbeta[set], S.N, S.C, S.HW);

    protected override void ComputeReference()
        => _expected = BatchNorm2d.Reference.BackwardRelu(D(X0), D(Y0), D(Dy0), D(Gamma0), Mean0, InvStd0, S.N, S.C, S.HW);

    protected override IEnumerable<OutputError> Compare() => GradientErrors(_expected!);
}
