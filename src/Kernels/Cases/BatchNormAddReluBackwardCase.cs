using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>
/// Backward of a BasicBlock's tail: dx, d(identity), dgamma, dbeta from x, the output y, dy and the saved
/// statistics. Set 0's y is the forward's (float); the timing sets use random y, which masks about half
/// of dy as real outputs do. dy is not modified (d(identity) has its own buffer); d(identity) is a
/// select of dy, so it must be exact.
/// </summary>
public sealed class BatchNormAddReluBackwardCase : OpCase<BatchNormAddReluBackwardLauncher>
{
    public static BatchNormAddReluBackwardLauncher Default => BatchNorm2d.BackwardAddRelu;

    private readonly BatchNormShape _s;
    private readonly float[] _x0, _y0, _dy0, _g;
    private readonly double[] _mean0, _inv0;
    private readonly ArrayView<float>[] _x, _y, _dy, _mean, _inv, _dx, _di, _dg, _db;
    private readonly ArrayView<float> _gamma;
    private BatchNorm2d.Reference.AddReluBackwardResult? _expected;

    public BatchNormAddReluBackwardCase(Device dev, Random rng, BatchNormShape s, int sets = 1)
        : base(dev, rng, "batchnorm_add_relu_bwd", s.ToString(), OpCost.BatchNormAddReluBackward(s.Length), gemm: false, sets)
    {
        _s = s;
        _x0 = BatchNormCase.X(rng, s);
        _dy0 = Rand(s.Length);
        _g = BatchNormCase.Gamma(rng, s.C);
        var fwd = BatchNorm2d.Reference.ForwardTrainAddRelu(D(_x0), D(Rand(s.Length)), D(_g), D(BatchNormCase.Beta(rng, s.C)), new double[s.C],
            Enumerable.Repeat(1.0, s.C).ToArray(), s.N, s.C, s.HW);
        _y0 = Array.ConvertAll(fwd.Y, v => (float)v);
        var (mean, inv) = BatchNormCase.SavedStatistics(fwd);
        _mean0 = D(mean);
        _inv0 = D(inv);
        _x = PerSet(_x0, () => BatchNormCase.X(rng, s));
        _y = PerSet(_y0, () => Rand(s.Length));
        _dy = PerSet(_dy0, () => Rand(s.Length));
        _gamma = Upload(_g);
        _mean = PerSet(mean, () => mean);
        _inv = PerSet(inv, () => inv);
        _dx = Outputs<float>(s.Length);
        _di = Outputs<float>(s.Length);
        _dg = Outputs<float>(s.C);
        _db = Outputs<float>(s.C);
    }

    public override void Launch(BatchNormAddReluBackwardLauncher launcher, int set)
        => launcher(Dev, _x[set], _y[set], _dy[set], _gamma, _mean[set], _inv[set], _dx[set], _di[set], _dg[set], _db[set], _s.N, _s.C, _s.HW);

    protected override void Reset() => Poison(_dx[0], _di[0], _dg[0], _db[0]);

    protected override void ComputeReference()
        => _expected = BatchNorm2d.Reference.BackwardAddRelu(D(_x0), D(_y0), D(_dy0), D(_g), _mean0, _inv0, _s.N, _s.C, _s.HW);

    protected override IEnumerable<OutputError> Compare()
    {
        double sums = BatchNormCase.ChannelSumAtol(_s);
        return
        [
            Error("dx", _expected!.Dx, _dx[0]), Error("didentity", _expected.Didentity, _di[0], rtol: 0, atol: 0),
            Error("dgamma", _expected.Dgamma, _dg[0], atol: sums), Error("dbeta", _expected.Dbeta, _db[0], atol: sums),
            Error("dy (unchanged)", D(_dy0), _dy[0], rtol: 0, atol: 0),
        ];
    }
}
