using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>
/// Training forward of a BasicBlock's tail, y = relu(bn(x) + identity): batch statistics, running-statistics
/// update and the fused output. identity lies in [-1, 1], so the ReLU clips a good part of y; identity is an
/// input only.
/// </summary>
public sealed class BatchNormAddReluForwardCase : OpCase<BatchNormAddReluForwardLauncher>
{
    public static BatchNormAddReluForwardLauncher Default => BatchNorm2d.ForwardTrainAddRelu;

    private readonly BatchNormShape _s;
    private readonly float[] _x0, _id0, _g, _b, _rm, _rv;
    private readonly ArrayView<float>[] _x, _id, _y, _mean, _inv, _runMean, _runVar;
    private readonly ArrayView<float> _gamma, _beta;
    private BatchNorm2d.Reference.TrainResult? _expected;

    public BatchNormAddReluForwardCase(Device dev, Random rng, BatchNormShape s, int sets = 1)
        : base(dev, rng, "batchnorm_add_relu_fwd_train", s.ToString(), OpCost.BatchNormAddReluTrain(s.Length), gemm: false, sets)
    {
        _s = s;
        _x0 = BatchNormCase.X(rng, s);
        _id0 = Rand(s.Length);
        _g = BatchNormCase.Gamma(rng, s.C);
        _b = BatchNormCase.Beta(rng, s.C);
        _rm = BatchNormCase.RunningMean(rng, s.C);
        _rv = BatchNormCase.RunningVar(rng, s.C);
        _x = PerSet(_x0, () => BatchNormCase.X(rng, s));
        _id = PerSet(_id0, () => Rand(s.Length));
        _gamma = Upload(_g);
        _beta = Upload(_b);
        _runMean = PerSet(_rm, () => BatchNormCase.RunningMean(rng, s.C));
        _runVar = PerSet(_rv, () => BatchNormCase.RunningVar(rng, s.C));
        _y = Outputs<float>(s.Length);
        _mean = Outputs<float>(s.C);
        _inv = Outputs<float>(s.C);
    }

    public override void Launch(BatchNormAddReluForwardLauncher launcher, int set)
        => launcher(Dev, _x[set], _id[set], _gamma, _beta, _y[set], _mean[set], _inv[set], _runMean[set], _runVar[set], _s.N, _s.C, _s.HW,
            BatchNormCase.Momentum, BatchNormCase.Eps);

    protected override void Reset()
    {
        Restore(_runMean[0], _rm);
        Restore(_runVar[0], _rv);
        Poison(_y[0], _mean[0], _inv[0]);
    }

    protected override void ComputeReference()
        => _expected = BatchNorm2d.Reference.ForwardTrainAddRelu(D(_x0), D(_id0), D(_g), D(_b), D(_rm), D(_rv), _s.N, _s.C, _s.HW);

    /// <summary>The statistics and y as for every batch-norm forward, and identity left as it was (exactly).</summary>
    protected override IEnumerable<OutputError> Compare() => BatchNormTrainErrors(_expected!, _x0, _g, _b, _y[0], _mean[0], _inv[0], _runMean[0], _runVar[0],
        _s.N, _s.C, _s.HW, z => Relu.Reference.Forward(Elementwise.Reference.Add(z, D(_id0))))
        .Append(Error("identity (unchanged)", D(_id0), _id[0], rtol: 0, atol: 0));
}
