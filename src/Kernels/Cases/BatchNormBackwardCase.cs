using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>The launcher signature of the op: any variant of it (the engine's own launcher converts as a method group).</summary>
public delegate void BatchNormBackwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> gamma,
    ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dx, ArrayView<float> dgamma, ArrayView<float> dbeta, int n, int c, int hw);

/// <summary>Training backward: dx, dgamma, dbeta from x, dy and the saved statistics.</summary>
public sealed class BatchNormBackwardCase(Device dev, Random rng, BatchNormShape s, int sets = 1)
    : BatchNormGradCase<BatchNormBackwardLauncher>(dev, rng, OpName, s, OpCost.BatchNormBackward(s.Length), sets, withY: false,
        (x, gamma) =>
        {
            var (rm, rv) = FreshRunningStatistics(s.C);
            return BatchNorm2d.Reference.ForwardTrain(x, gamma, new double[s.C], rm, rv, s.N, s.C, s.HW);
        }),
    ICheckedCase
{
    public const string OpName = "batchnorm_bwd";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in CaseCheck.Sizes(BatchNormCase.Shapes, BatchNormCase.LargeShapes, large)
        select CaseCheck.Of(OpName, s, (d, r) => new BatchNormBackwardCase(d, r, s), Default);

    private BatchNorm2d.Reference.BackwardResult? _expected;

    public static BatchNormBackwardLauncher Default => BatchNorm2d.Backward;

    public override void Launch(BatchNormBackwardLauncher launcher, int set)
        => launcher(Dev, X[set], Dy[set], Gamma, SaveMean[set], SaveInvStd[set], Dx[set], Dgamma[set], Dbeta[set], S.N, S.C, S.HW);

    protected override void ComputeReference()
        => _expected = BatchNorm2d.Reference.Backward(D(X0), D(Dy0), D(Gamma0), Mean0, InvStd0, S.N, S.C, S.HW);

    protected override IEnumerable<OutputError> Compare() => GradientErrors(_expected!);
}
