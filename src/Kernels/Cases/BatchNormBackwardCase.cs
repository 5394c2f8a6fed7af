using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>Training backward: dx, dgamma, dbeta from x, dy and the saved statistics (the forward's, in float as its kernel stores them).</summary>
public sealed class BatchNormBackwardCase : OpCase<BatchNormBackwardLauncher>
{
    public static BatchNormBackwardLauncher Default => BatchNorm2d.Backward;

    private readonly BatchNormShape _s;
    private readonly float[] _x0, _dy0, _g;
    private readonly double[] _mean0, _inv0;
    private readonly ArrayView<float>[] _x, _dy, _mean, _inv, _dx, _dg, _db;
    private readonly ArrayView<float> _gamma;
    private BatchNorm2d.Reference.BackwardResult? _expected;

    public BatchNormBackwardCase(Device dev, Random rng, BatchNormShape s, int sets = 1)
        : base(dev, rng, "batchnorm_bwd", s.ToString(), OpCost.BatchNormBackward(s.Length), gemm: false, sets)
    {
        _s = s;
        _x0 = BatchNormCase.X(rng, s);
        _dy0 = Rand(s.Length);
        _g = BatchNormCase.Gamma(rng, s.C);
        var (mean, inv) = BatchNormCase.SavedStatistics(BatchNorm2d.Reference.ForwardTrain(D(_x0), D(_g), new double[s.C], new double[s.C],
            Enumerable.Repeat(1.0, s.C).ToArray(), s.N, s.C, s.HW));
        _mean0 = D(mean);
        _inv0 = D(inv);
        _x = PerSet(_x0, () => BatchNormCase.X(rng, s));
        _dy = PerSet(_dy0, () => Rand(s.Length));
        _gamma = Upload(_g);
        _mean = PerSet(mean, () => mean);
        _inv = PerSet(inv, () => inv);
        _dx = Outputs<float>(s.Length);
        _dg = Outputs<float>(s.C);
        _db = Outputs<float>(s.C);
    }

    public override void Launch(BatchNormBackwardLauncher launcher, int set)
        => launcher(Dev, _x[set], _dy[set], _gamma, _mean[set], _inv[set], _dx[set], _dg[set], _db[set], _s.N, _s.C, _s.HW);

    protected override void Reset() => Poison(_dx[0], _dg[0], _db[0]);

    protected override void ComputeReference()
        => _expected = BatchNorm2d.Reference.Backward(D(_x0), D(_dy0), D(_g), _mean0, _inv0, _s.N, _s.C, _s.HW);

    protected override IEnumerable<OutputError> Compare()
    {
        double sums = BatchNormCase.ChannelSumAtol(_s);
        return [Error("dx", _expected!.Dx, _dx[0]), Error("dgamma", _expected.Dgamma, _dg[0], atol: sums), Error("dbeta", _expected.Dbeta, _db[0], atol: sums)];
    }
}
