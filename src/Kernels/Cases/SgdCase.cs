using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>The launcher signature of the op: any variant of it (the engine's own launcher converts as a method group).</summary>
public delegate void SgdLauncher(Device dev, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> momentumBuffer,
    float lr, float momentum, float weightDecay, bool firstStep);

/// <summary>
/// One SGD step (momentum 0.9, weight decay 5e-4, as the seed trains) over flat parameters: a steady-state
/// step (momentum buffer already started), or with <c>firstStep</c> the step that starts the buffer from
/// d = g + wd·p, whose buffer starts poisoned so that a kernel reading it is caught.
/// </summary>
public sealed class SgdCase : OpCase<SgdLauncher>, ICheckedCase
{
    public const string OpName = "sgd_step";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from n in Lengths
        from first in new[] { true, false }
        select CaseCheck.Of(OpName, $"n={n}" + (first ? " first step" : ""), (d, r) => new SgdCase(d, r, n, firstStep: first), Default);

    public const float Lr = 0.1f, Momentum = 0.9f, WeightDecay = 5e-4f;

    public static IReadOnlyList<long> Lengths { get; } = [1, 37, 1003];

    public static SgdLauncher Default => Sgd.Step;

    private readonly bool _firstStep;
    private readonly float[] _p0, _g0, _buf0;
    private readonly ArrayView<float>[] _p, _g, _buf;
    private double[] _expectedP = [], _expectedBuf = [];

    public SgdCase(Device dev, Random rng, long parameters, int sets = 1, bool firstStep = false)
        : base(dev, rng, OpName, $"n={parameters}" + (firstStep ? " first step" : ""), OpCost.Sgd(parameters), gemm: false, sets)
    {
        _firstStep = firstStep;
        _p0 = Rand(parameters);
        _g0 = Rand(parameters);
        _buf0 = Rand(parameters);
        _p = PerSet(_p0, () => Rand(parameters));
        _g = PerSet(_g0, () => Rand(parameters));
        _buf = PerSet(_buf0, () => Rand(parameters));
    }

    public override void Launch(SgdLauncher launcher, int set) => launcher(Dev, _p[set], _g[set], _buf[set], Lr, Momentum, WeightDecay, _firstStep);

    protected override void Reset()
    {
        Restore(_p[0], _p0);
        if (_firstStep) Poison(_buf[0]);
        else Restore(_buf[0], _buf0);
    }

    protected override void ComputeReference()
    {
        _expectedP = D(_p0);
        _expectedBuf = _firstStep ? new double[_p0.Length] : D(_buf0);
        Sgd.Reference.Step(_expectedP, D(_g0), _expectedBuf, Lr, Momentum, WeightDecay, _firstStep);
    }

    protected override IEnumerable<OutputError> Compare() => [Error("param", _expectedP, _p[0]), Error("momentum_buffer", _expectedBuf, _buf[0])];
}
