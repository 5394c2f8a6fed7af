using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>The launcher signature of the op: any variant of it (the engine's own launcher converts as a method group).</summary>
public delegate void LinearBackwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> dy,
    ArrayView<float> dx, ArrayView<float> dw, ArrayView<float> db, int n, int inF, int outF);

/// <summary>Linear backward: dx = dy w, dw = dyᵀ x, db = Σ_rows dy (each overwritten, not accumulated: the outputs start poisoned).</summary>
public sealed class LinearBackwardCase : OpCase<LinearBackwardLauncher>, ICheckedCase
{
    public const string OpName = "linear_bwd";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in CaseCheck.Sizes(LinearCase.Shapes, LinearCase.LargeShapes, large)
        select CaseCheck.Of(OpName, s, (d, r) => new LinearBackwardCase(d, r, s), Default);

    public static LinearBackwardLauncher Default => Linear.Backward;

    private readonly LinearShape _s;
    private readonly float[] _x0, _w, _dy0;
    private readonly ArrayView<float>[] _x, _dy, _dx, _dw, _db;
    private readonly ArrayView<float> _weight;
    private (double[] Dx, double[] Dw, double[] Db) _expected;

    public LinearBackwardCase(Device dev, Random rng, LinearShape s, int sets = 1)
        : base(dev, rng, OpName, s.ToString(), OpCost.LinearBackward(s.N, s.InF, s.OutF), gemm: true, sets)
    {
        _s = s;
        _x0 = Rand((long)s.N * s.InF);
        _w = Rand((long)s.OutF * s.InF);
        _dy0 = Rand((long)s.N * s.OutF);
        _x = PerSet(_x0, () => Rand((long)s.N * s.InF));
        _dy = PerSet(_dy0, () => Rand((long)s.N * s.OutF));
        _weight = Upload(_w);
        _dx = Outputs<float>((long)s.N * s.InF);
        _dw = Outputs<float>((long)s.OutF * s.InF);
        _db = Outputs<float>(s.OutF);
    }

    public override void Launch(LinearBackwardLauncher launcher, int set)
        => launcher(Dev, _x[set], _weight, _dy[set], _dx[set], _dw[set], _db[set], _s.N, _s.InF, _s.OutF);
    protected override void Reset() => Poison(_dx[0], _dw[0], _db[0]);
    protected override void ComputeReference() => _expected = Linear.Reference.Backward(D(_x0), D(_w), D(_dy0), _s.N, _s.InF, _s.OutF);

    protected override IEnumerable<OutputError> Compare()
    {
        double atol = LinearCase.Atol(_s);
        return [Error("dx", _expected.Dx, _dx[0], atol: atol), Error("dw", _expected.Dw, _dw[0], atol: atol), Error("db", _expected.Db, _db[0], atol: atol)];
    }
}
