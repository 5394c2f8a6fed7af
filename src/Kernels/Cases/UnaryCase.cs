using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>ReLU forward (x -> y).</summary>
public delegate void UnaryLauncher(Device dev, ArrayView<float> x, ArrayView<float> y);

/// <summary>An element-wise op x -> y (ReLU forward), x uniform in [-1, 1].</summary>
public sealed class UnaryCase : OpCase<UnaryLauncher>, ICheckedCase
{
    public static IEnumerable<CaseCheck> Checks(bool large) =>
        Lengths.Select(n => CaseCheck.Of("relu_fwd", $"n={n}", (d, r) => ReluForward(d, r, n), Relu.Forward));

    /// <summary>Lengths: one element, a few (not a multiple of 4: the float4 kernels' tail), many.</summary>
    public static IReadOnlyList<long> Lengths { get; } = [1, 7, 37, 1000, 1001];

    public static UnaryCase ReluForward(Device dev, Random rng, long n, int sets = 1)
        => new(dev, rng, "relu_fwd", n, OpCost.ReluForward(n), Relu.Reference.Forward, sets);

    private readonly float[] _x0;
    private readonly ArrayView<float>[] _x, _y;
    private readonly Func<double[], double[]> _reference;
    private double[] _expected = [];

    private UnaryCase(Device dev, Random rng, string op, long n, Cost cost, Func<double[], double[]> reference, int sets)
        : base(dev, rng, op, $"n={n}", cost, gemm: false, sets)
    {
        _reference = reference;
        _x0 = Rand(n);
        _x = PerSet(_x0, () => Rand(n));
        _y = Outputs<float>(n);
    }

    public override void Launch(UnaryLauncher launcher, int set) => launcher(Dev, _x[set], _y[set]);
    protected override void Reset() => Poison(_y[0]);
    protected override void ComputeReference() => _expected = _reference(D(_x0));
    protected override IEnumerable<OutputError> Compare() => [Error("y", _expected, _y[0])];
}
