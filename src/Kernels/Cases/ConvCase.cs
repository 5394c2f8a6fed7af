using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>Conv forward (x, w -> y), backward-data (dy, w -> dx) and backward-weight (x, dy -> dw).</summary>
public delegate void ConvLauncher(Device dev, ArrayView<float> a, ArrayView<float> b, ArrayView<float> output, in Conv2dShape s);

public enum ConvPass { Forward, BackwardData, BackwardWeight }

/// <summary>
/// Conv forward (x, w -> y), backward-data (dy, w -> dx) or backward-weight (x, dy -> dw): operands
/// uniform in [-1, 1], outputs compared with <see cref="Conv2d.Reference"/> within
/// <see cref="OpCase{TLauncher}.SumAtol"/> of their term count (for a TF32 variant, within
/// <see cref="Conv2dTf32.Tolerance(long)"/> of the exact answer and, forward only, within the fp32
/// tolerance of its own TF32 reference: a wrong fragment layout gives errors of order 1).
/// </summary>
public sealed class ConvCase : OpCase<ConvLauncher>, ICheckedCase
{
    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in CaseCheck.Sizes(Shapes, LargeShapes, large)
        from pass in Passes
        select CaseCheck.Of(OpName(pass), s, (d, r) => new ConvCase(d, r, s, pass), Default(pass));

    /// <summary>
    /// Small shapes covering ResNet's kernels (1x1/1, 1x1/2, 3x3/1, 3x3/2, 7x7/2 pad 3), non-square
    /// images, and sizes that are not multiples of the tiles (4x4 blocks, 4- to 32-deep slices) on any GEMM edge.
    /// </summary>
    public static IReadOnlyList<Conv2dShape> Shapes { get; } =
    [
        new(2, 3, 7, 7, 5, 3, 3, 1, 1), new(2, 3, 7, 7, 5, 1, 1, 1, 0), new(1, 6, 9, 9, 5, 1, 1, 2, 0), new(2, 3, 9, 8, 6, 3, 3, 2, 1),
        new(1, 3, 11, 11, 5, 7, 7, 2, 3), new(3, 5, 5, 6, 7, 3, 3, 1, 1), new(1, 1, 1, 1, 1, 1, 1, 1, 0), new(3, 5, 9, 8, 6, 1, 1, 2, 0),
        new(1, 7, 5, 6, 9, 3, 3, 2, 1),
        // For backward-data by stride phase: a 1x1/2 (phases without taps), a 3x3/2 without padding, a 7x7/3
        // (nine phases of 3, 2 or 1 taps), and images too small to hold every phase.
        new(2, 5, 8, 8, 6, 1, 1, 2, 0), new(1, 4, 8, 7, 9, 3, 3, 2, 0), new(2, 2, 10, 9, 3, 7, 7, 3, 3), new(3, 5, 5, 6, 7, 3, 3, 2, 1),
        new(1, 2, 1, 1, 3, 1, 1, 2, 0), new(1, 2, 1, 2, 3, 3, 3, 2, 1),
    ];

    /// <summary>ResNet-sized layers (a 3x3 of layer1 at 8x8, a stride-2 3x3 of layer3, the 7x7 stem): slow on the CPU accelerator.</summary>
    public static IReadOnlyList<Conv2dShape> LargeShapes { get; } =
        [new(32, 64, 8, 8, 64, 3, 3, 1, 1), new(32, 128, 4, 4, 256, 3, 3, 2, 1), new(16, 3, 32, 32, 64, 7, 7, 2, 3)];

    public static ConvPass[] Passes { get; } = [ConvPass.Forward, ConvPass.BackwardData, ConvPass.BackwardWeight];

    /// <summary>The op's name as the kernel profiler shows it.</summary>
    public static string OpName(ConvPass pass) => pass switch
    {
        ConvPass.Forward => "conv2d_fwd",
        ConvPass.BackwardData => "conv2d_bwd_data",
        _ => "conv2d_bwd_weight",
    };

    /// <summary>The engine's launcher of the pass.</summary>
    public static ConvLauncher Default(ConvPass pass) => pass switch
    {
        ConvPass.Forward => Conv2d.Forward,
        ConvPass.BackwardData => Conv2d.BackwardData,
        _ => Conv2d.BackwardWeight,
    };

    /// <summary>The products summed into each output: C·R·S (forward), K·R·S (backward-data), N·OH·OW (backward-weight).</summary>
    public static long Terms(ConvPass pass, in Conv2dShape s) => pass switch
    {
        ConvPass.Forward => (long)s.C * s.R * s.S,
        ConvPass.BackwardData => (long)s.K * s.R * s.S,
        _ => (long)s.N * s.OutH * s.OutW,
    };

    private readonly Conv2dShape _s;
    private readonly ConvPass _pass;
    private readonly float[] _a0, _b0;
    private readonly ArrayView<float>[] _a, _b, _out;
    private double[] _expected = [];

    public ConvCase(Device dev, Random rng, Conv2dShape s, ConvPass pass, int sets = 1)
        : base(dev, rng, OpName(pass), s.ToString(), OpCost.Conv2d(s), gemm: true, sets)
    {
        _s = s;
        _pass = pass;
        long x = s.InputLength, w = s.WeightLength, y = s.OutputLength;
        var (aLen, bLen, outLen) = pass switch
        {
            ConvPass.Forward => (x, w, y),
            ConvPass.BackwardData => (y, w, x),
            _ => (x, y, w),
        };
        _a0 = Rand(aLen);
        _b0 = Rand(bLen);
        _a = PerSet(_a0, () => Rand(aLen));
        _b = PerSet(_b0, () => Rand(bLen));
        _out = Outputs<float>(outLen);
    }

    public override void Launch(ConvLauncher launcher, int set) => launcher(Dev, _a[set], _b[set], _out[set], _s);

    protected override void Reset() => Poison(_out[0]);

    protected override void ComputeReference() => _expected = _pass switch
    {
        ConvPass.Forward => Conv2d.Reference.Forward(D(_a0), D(_b0), _s),
        ConvPass.BackwardData => Conv2d.Reference.BackwardData(D(_a0), D(_b0), _s),
        _ => Conv2d.Reference.BackwardWeight(D(_a0), D(_b0), _s),
    };

    protected override IEnumerable<OutputError> Compare()
    {
        long terms = Terms(_pass, _s);
        float[] actual = Dev.Download(_out[0]);
        if (CheckPrecision != Precision.Tf32) return [Error("out", _expected, actual, atol: SumAtol(terms))];
        var (rtol, atol) = Conv2dTf32.Tolerance(terms);
        var errors = new List<OutputError> { Error("out vs exact", _expected, actual, rtol, atol) };
        if (_pass == ConvPass.Forward) errors.Add(Error("out vs tf32 reference", Conv2dTf32.Reference.Forward(D(_a0), D(_b0), _s), actual, atol: SumAtol(terms)));
        return errors;
    }
}
