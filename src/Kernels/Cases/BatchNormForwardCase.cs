using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>
/// Training forward: batch statistics, running-statistics update, normalise; with <c>relu</c>, the
/// bn -> relu pair (y = max(0, bn(x))), whose variants are the fused op and bn then relu. Compared as
/// <see cref="OpCase{TLauncher}.BatchNormTrainErrors"/> says.
/// </summary>
public sealed class BatchNormForwardCase : OpCase<BatchNormForwardLauncher>
{
    public static BatchNormForwardLauncher Default(bool relu) => relu ? BatchNorm2d.ForwardTrainRelu : BatchNorm2d.ForwardTrain;

    private readonly BatchNormShape _s;
    private readonly bool _relu;
    private readonly float[] _x0, _g, _b, _rm, _rv;
    private readonly ArrayView<float>[] _x, _y, _mean, _inv, _runMean, _runVar;
    private readonly ArrayView<float> _gamma, _beta;
    private BatchNorm2d.Reference.TrainResult? _expected;

    public BatchNormForwardCase(Device dev, Random rng, BatchNormShape s, int sets = 1, bool relu = false)
        : base(dev, rng, relu ? "batchnorm_relu_fwd_train" : "batchnorm_fwd_train", s.ToString(),
            relu ? OpCost.BatchNormReluTrain(s.Length) : OpCost.BatchNormTrain(s.Length), gemm: false, sets)
    {
        _s = s;
        _relu = relu;
        _x0 = BatchNormCase.X(rng, s);
        _g = BatchNormCase.Gamma(rng, s.C);
        _b = BatchNormCase.Beta(rng, s.C);
        _rm = BatchNormCase.RunningMean(rng, s.C);
        _rv = BatchNormCase.RunningVar(rng, s.C);
        _x = PerSet(_x0, () => BatchNormCase.X(rng, s));
        _gamma = Upload(_g);
        _beta = Upload(_b);
        _runMean = PerSet(_rm, () => BatchNormCase.RunningMean(rng, s.C));
        _runVar = PerSet(_rv, () => BatchNormCase.RunningVar(rng, s.C));
        _y = Outputs<float>(s.Length);
        _mean = Outputs<float>(s.C);
        _inv = Outputs<float>(s.C);
    }

    public override void Launch(BatchNormForwardLauncher launcher, int set)
        => launcher(Dev, _x[set], _gamma, _beta, _y[set], _mean[set], _inv[set], _runMean[set], _runVar[set], _s.N, _s.C, _s.HW, BatchNormCase.Momentum, BatchNormCase.Eps);

    protected override void Reset()
    {
        Restore(_runMean[0], _rm);
        Restore(_runVar[0], _rv);
        Poison(_y[0], _mean[0], _inv[0]);
    }

    protected override void ComputeReference() => _expected = _relu
        ? BatchNorm2d.Reference.ForwardTrainRelu(D(_x0), D(_g), D(_b), D(_rm), D(_rv), _s.N, _s.C, _s.HW)
        : BatchNorm2d.Reference.ForwardTrain(D(_x0), D(_g), D(_b), D(_rm), D(_rv), _s.N, _s.C, _s.HW);

    protected override IEnumerable<OutputError> Compare() => BatchNormTrainErrors(_expected!, _x0, _g, _b, _y[0], _mean[0], _inv[0], _runMean[0], _runVar[0],
        _s.N, _s.C, _s.HW, z => _relu ? Relu.Reference.Forward(z) : z);
}
