using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>Adaptive average pool to 1x1, forward (x [nc, hw] -> y [nc]) and backward (dy [nc] -> dx [nc, hw]).</summary>
public delegate void AvgPoolLauncher(Device dev, ArrayView<float> input, ArrayView<float> output, int nc, int hw);

/// <summary>Global average pool forward ([nc, hw] -> [nc]) or backward ([nc] -> [nc, hw]).</summary>
public sealed class AvgPoolCase : OpCase<AvgPoolLauncher>, ICheckedCase
{
    public static string OpName(bool forward) => forward ? "avgpool_fwd" : "avgpool_bwd";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in Shapes
        from forward in new[] { true, false }
        select CaseCheck.Of(OpName(forward), $"nc={s.NC} hw={s.HW}", (d, r) => new AvgPoolCase(d, r, s.NC, s.HW, forward), Default(forward));

    /// <summary>(nc, hw): one value, odd planes, ResNet's 7x7 last plane, a power of two.</summary>
    public static IReadOnlyList<(int NC, int HW)> Shapes { get; } = [(1, 1), (15, 7), (6, 49), (10, 16)];

    public static AvgPoolLauncher Default(bool forward) => forward ? AdaptiveAvgPool.Forward : AdaptiveAvgPool.Backward;

    private readonly int _nc, _hw;
    private readonly bool _forward;
    private readonly float[] _in0;
    private readonly ArrayView<float>[] _in, _out;
    private double[] _expected = [];

    public AvgPoolCase(Device dev, Random rng, int nc, int hw, bool forward, int sets = 1)
        : base(dev, rng, OpName(forward), $"nc={nc} hw={hw}", OpCost.AvgPool(nc, hw), gemm: false, sets)
    {
        _nc = nc;
        _hw = hw;
        _forward = forward;
        long inLen = forward ? (long)nc * hw : nc, outLen = forward ? nc : (long)nc * hw;
        _in0 = Rand(inLen);
        _in = PerSet(_in0, () => Rand(inLen));
        _out = Outputs<float>(outLen);
    }

    public override void Launch(AvgPoolLauncher launcher, int set) => launcher(Dev, _in[set], _out[set], _nc, _hw);
    protected override void Reset() => Poison(_out[0]);
    protected override void ComputeReference()
        => _expected = _forward ? AdaptiveAvgPool.Reference.Forward(D(_in0), _nc, _hw) : AdaptiveAvgPool.Reference.Backward(D(_in0), _nc, _hw);
    protected override IEnumerable<OutputError> Compare() => [Error(_forward ? "y" : "dx", _expected, _out[0])];
}
