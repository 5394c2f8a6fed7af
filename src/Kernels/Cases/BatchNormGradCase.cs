using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>
/// What every batch-norm backward case has: x, dy, gamma and the saved statistics of a forward over x (in
/// float, as the forward kernel stores them), and with <c>withY</c> that forward's output y (the ReLU
/// mask) for set 0, random y for the timing sets (which masks about half of dy, as real outputs do); dx,
/// dgamma and dbeta start poisoned. dgamma and dbeta are sums over n·hw and get the absolute slack of
/// <see cref="BatchNormCase.ChannelSumAtol"/>.
/// </summary>
public abstract class BatchNormGradCase<TLauncher> : OpCase<TLauncher> where TLauncher : Delegate
{
    /// <param name="forward">The op's forward reference applied to (x, gamma) with fresh beta, identity and running statistics: y and the saved statistics.</param>
    protected BatchNormGradCase(Device dev, Random rng, string op, BatchNormShape s, Cost cost, int sets, bool withY,
        Func<double[], double[], BatchNorm2d.Reference.TrainResult> forward)
        : base(dev, rng, op, s.ToString(), cost, gemm: false, sets)
    {
        S = s;
        X0 = BatchNormCase.X(rng, s);
        Dy0 = Rand(s.Length);
        Gamma0 = BatchNormCase.Gamma(rng, s.C);
        BatchNorm2d.Reference.TrainResult fwd = forward(D(X0), D(Gamma0));
        Y0 = Array.ConvertAll(fwd.Y, v => (float)v);
        var (mean, inv) = BatchNormCase.SavedStatistics(fwd);
        Mean0 = D(mean);
        InvStd0 = D(inv);
        X = PerSet(X0, () => BatchNormCase.X(rng, s));
        Y = withY ? PerSet(Y0, () => Rand(s.Length)) : [];
        Dy = PerSet(Dy0, () => Rand(s.Length));
        Gamma = Upload(Gamma0);
        SaveMean = PerSet(mean, () => mean);
        SaveInvStd = PerSet(inv, () => inv);
        Dx = Outputs<float>(s.Length);
        Dgamma = Outputs<float>(s.C);
        Dbeta = Outputs<float>(s.C);
    }

    protected BatchNormShape S { get; }
    protected float[] X0 { get; }
    protected float[] Dy0 { get; }
    protected float[] Gamma0 { get; }
    protected float[] Y0 { get; }
    protected double[] Mean0 { get; }
    protected double[] InvStd0 { get; }
    protected ArrayView<float>[] X { get; }
    protected ArrayView<float>[] Y { get; }
    protected ArrayView<float>[] Dy { get; }
    protected ArrayView<float> Gamma { get; }
    protected ArrayView<float>[] SaveMean { get; }
    protected ArrayView<float>[] SaveInvStd { get; }
    protected ArrayView<float>[] Dx { get; }
    protected ArrayView<float>[] Dgamma { get; }
    protected ArrayView<float>[] Dbeta { get; }

    /// <summary>A forward's default running statistics (mean 0, variance 1) for <paramref name="forward"/>, which does not depend on them.</summary>
    protected static (double[] Mean, double[] Var) FreshRunningStatistics(int c) => (new double[c], Enumerable.Repeat(1.0, c).ToArray());

    protected override void Reset() => Poison(Dx[0], Dgamma[0], Dbeta[0]);

    /// <summary>dx, dgamma and dbeta of set 0 against <paramref name="expected"/>.</summary>
    protected IEnumerable<OutputError> GradientErrors(BatchNorm2d.Reference.BackwardResult expected)
    {
        double sums = BatchNormCase.ChannelSumAtol(S);
        return [Error("dx", expected.Dx, Dx[0]), Error("dgamma", expected.Dgamma, Dgamma[0], atol: sums), Error("dbeta", expected.Dbeta, Dbeta[0], atol: sums)];
    }
}
