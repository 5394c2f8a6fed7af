using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>Backward of y = relu(bn(x) + identity) given y (the ReLU mask) and dy: dx, d(identity), dgamma, dbeta.</summary>
public delegate void BatchNormAddReluBackwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> gamma,
    ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dx, ArrayView<float> dIdentity, ArrayView<float> dgamma, ArrayView<float> dbeta,
    int n, int c, int hw);

/// <summary>
/// Backward of a BasicBlock's tail: dx, d(identity), dgamma, dbeta from x, the output y, dy and the saved
/// statistics. dy must be left as it was (d(identity) has its own buffer); d(identity) is a select of dy,
/// so it must be exact.
/// </summary>
public sealed class BatchNormAddReluBackwardCase : BatchNormGradCase<BatchNormAddReluBackwardLauncher>, ICheckedCase
{
    public const string OpName = "batchnorm_add_relu_bwd";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in CaseCheck.Sizes(BatchNormCase.Shapes, BatchNormCase.LargeShapes, large)
        select CaseCheck.Of(OpName, s, (d, r) => new BatchNormAddReluBackwardCase(d, r, s), Default);

    public static BatchNormAddReluBackwardLauncher Default => BatchNorm2d.BackwardAddRelu;

    private readonly ArrayView<float>[] _di;
    private BatchNorm2d.Reference.AddReluBackwardResult? _expected;

    public BatchNormAddReluBackwardCase(Device dev, Random rng, BatchNormShape s, int sets = 1)
        : base(dev, rng, OpName, s, OpCost.BatchNormAddReluBackward(s.Length), sets, withY: true, (x, gamma) =>
        {
            var (rm, rv) = FreshRunningStatistics(s.C);
            return BatchNorm2d.Reference.ForwardTrainAddRelu(x, CaseInputs.D(CaseInputs.Uniform(rng, s.Length)), gamma,
                CaseInputs.D(BatchNormCase.Beta(rng, s.C)), rm, rv, s.N, s.C, s.HW);
        })
    {
        _di = Outputs<float>(s.Length);
    }

    public override void Launch(BatchNormAddReluBackwardLauncher launcher, int set)
        => launcher(Dev, X[set], Y[set], Dy[set], Gamma, SaveMean[set], SaveInvStd[set], Dx[set], _di[set], Dgamma[set], Dbeta[set], S.N, S.C, S.HW);

    protected override void Reset()
    {
        base.Reset();
        Poison(_di[0]);
    }

    protected override void ComputeReference()
        => _expected = BatchNorm2d.Reference.BackwardAddRelu(D(X0), D(Y0), D(Dy0), D(Gamma0), Mean0, InvStd0, S.N, S.C, S.HW);

    protected override IEnumerable<OutputError> Compare()
    {
        var r = _expected!;
        return GradientErrors(new BatchNorm2d.Reference.BackwardResult(r.Dx, r.Dgamma, r.Dbeta))
            .Append(Error("didentity", r.Didentity, _di[0], rtol: 0, atol: 0))
            .Append(Error("dy (unchanged)", D(Dy0), Dy[0], rtol: 0, atol: 0));
    }
}
