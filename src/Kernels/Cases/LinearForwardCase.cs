using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>The launcher signature of the op: any variant of it (the engine's own launcher converts as a method group).</summary>
public delegate void LinearForwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ArrayView<float> y, int n, int inF, int outF);

/// <summary>Linear forward y = x wᵀ + b, operands uniform in [-1, 1].</summary>
public sealed class LinearForwardCase : OpCase<LinearForwardLauncher>, ICheckedCase
{
    public const string OpName = "linear_fwd";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in CaseCheck.Sizes(LinearCase.Shapes, LinearCase.LargeShapes, large)
        select CaseCheck.Of(OpName, s, (d, r) => new LinearForwardCase(d, r, s), Default);

    public static LinearForwardLauncher Default => Linear.Forward;

    private readonly LinearShape _s;
    private readonly float[] _x0, _w, _b;
    private readonly ArrayView<float>[] _x, _y;
    private readonly ArrayView<float> _weight, _bias;
    private double[] _expected = [];

    public LinearForwardCase(Device dev, Random rng, LinearShape s, int sets = 1)
        : base(dev, rng, OpName, s.ToString(), OpCost.LinearForward(s.N, s.InF, s.OutF), gemm: true, sets)
    {
        _s = s;
        _x0 = Rand((long)s.N * s.InF);
        _w = Rand((long)s.OutF * s.InF);
        _b = Rand(s.OutF);
        _x = PerSet(_x0, () => Rand((long)s.N * s.InF));
        _weight = Upload(_w);
        _bias = Upload(_b);
        _y = Outputs<float>((long)s.N * s.OutF);
    }

    public override void Launch(LinearForwardLauncher launcher, int set) => launcher(Dev, _x[set], _weight, _bias, _y[set], _s.N, _s.InF, _s.OutF);
    protected override void Reset() => Poison(_y[0]);
    protected override void ComputeReference() => _expected = Linear.Reference.Forward(D(_x0), D(_w), D(_b), _s.N, _s.InF, _s.OutF);
    protected override IEnumerable<OutputError> Compare() => [Error("y", _expected, _y[0], atol: LinearCase.Atol(_s))];
}
