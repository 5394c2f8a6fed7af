using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>
/// What every batch-norm training forward case has: x, gamma, beta and the running statistics (restored
/// before each check), y and the saved statistics (poisoned), compared as the kernels must be: the saved
/// mean, the saved 1/std within its float32 rounding bound (large when a channel's few values nearly
/// coincide), y against the normalisation applied with the device's own statistics and then the op's
/// epilogue, and the running statistics.
/// </summary>
public abstract class BatchNormTrainCase<TLauncher> : OpCase<TLauncher> where TLauncher : Delegate
{
    private readonly float[] _rm, _rv;
    private BatchNorm2d.Reference.TrainResult? _expected;

    protected BatchNormTrainCase(Device dev, Random rng, string op, BatchNormShape s, Cost cost, int sets)
        : base(dev, rng, op, s.ToString(), cost, gemm: false, sets)
    {
        S = s;
        X0 = BatchNormCase.X(rng, s);
        Gamma0 = BatchNormCase.Gamma(rng, s.C);
        Beta0 = BatchNormCase.Beta(rng, s.C);
        _rm = BatchNormCase.RunningMean(rng, s.C);
        _rv = BatchNormCase.RunningVar(rng, s.C);
        X = PerSet(X0, () => BatchNormCase.X(rng, s));
        Gamma = Upload(Gamma0);
        Beta = Upload(Beta0);
        RunningMean = PerSet(_rm, () => BatchNormCase.RunningMean(rng, s.C));
        RunningVar = PerSet(_rv, () => BatchNormCase.RunningVar(rng, s.C));
        Y = Outputs<float>(s.Length);
        SaveMean = Outputs<float>(s.C);
        SaveInvStd = Outputs<float>(s.C);
    }

    protected BatchNormShape S { get; }
    protected float[] X0 { get; }
    protected float[] Gamma0 { get; }
    protected float[] Beta0 { get; }
    protected ArrayView<float>[] X { get; }
    protected ArrayView<float> Gamma { get; }
    protected ArrayView<float> Beta { get; }
    protected ArrayView<float>[] Y { get; }
    protected ArrayView<float>[] SaveMean { get; }
    protected ArrayView<float>[] SaveInvStd { get; }
    protected ArrayView<float>[] RunningMean { get; }
    protected ArrayView<float>[] RunningVar { get; }

    /// <summary>The op's float64 reference on set 0, from the given running statistics.</summary>
    protected abstract BatchNorm2d.Reference.TrainResult Reference(double[] runningMean, double[] runningVar);

    /// <summary>What the op applies after the normalisation (nothing, ReLU, + identity then ReLU).</summary>
    protected abstract double[] Epilogue(double[] z);

    protected override void Reset()
    {
        Restore(RunningMean[0], _rm);
        Restore(RunningVar[0], _rv);
        Poison(Y[0], SaveMean[0], SaveInvStd[0]);
    }

    protected override void ComputeReference() => _expected = Reference(D(_rm), D(_rv));

    protected override IEnumerable<OutputError> Compare()
    {
        BatchNorm2d.Reference.TrainResult r = _expected!;
        float[] mean = Dev.Download(SaveMean[0]), invStd = Dev.Download(SaveInvStd[0]);
        var e = BatchNorm2d.Reference.ExpectedFromStatistics(r, D(X0), D(Gamma0), D(Beta0), D(mean), D(invStd), S.N, S.C, S.HW, Epilogue);
        return
        [
            Error("save_mean", r.SaveMean, mean),
            Error("save_invstd", r.SaveInvStd, invStd, slack: e.InvStdSlack),
            Error("y", e.Y, Dev.Download(Y[0])),
            Error("running_mean", r.RunningMean, RunningMean[0]),
            Error("running_var", r.RunningVar, RunningVar[0]),
        ];
    }
}
