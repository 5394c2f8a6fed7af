using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>ReLU backward (y, dy -> dx) and the residual add (a, b -> y).</summary>
public delegate void BinaryLauncher(Device dev, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y);

/// <summary>An element-wise op a, b -> y (ReLU backward from y and dy, residual add), a and b uniform in [-1, 1].</summary>
public sealed class BinaryCase : OpCase<BinaryLauncher>, ICheckedCase
{
    /// <summary>ReLU backward and the residual add at <see cref="UnaryCase.Lengths"/>.</summary>
    public static IEnumerable<CaseCheck> Checks(bool large) =>
        UnaryCase.Lengths.SelectMany(n => new[]
        {
            CaseCheck.Of("relu_bwd", $"n={n}", (d, r) => ReluBackward(d, r, n), Relu.Backward),
            CaseCheck.Of("add_fwd", $"n={n}", (d, r) => Add(d, r, n), Elementwise.Add),
        });

    /// <summary>ReLU backward: dx = dy where y &gt; 0. Random y masks about half of dy, as real outputs do.</summary>
    public static BinaryCase ReluBackward(Device dev, Random rng, long n, int sets = 1)
        => new(dev, rng, "relu_bwd", n, OpCost.ReluBackward(n), Relu.Reference.Backward, sets);

    public static BinaryCase Add(Device dev, Random rng, long n, int sets = 1)
        => new(dev, rng, "add_fwd", n, OpCost.Binary(n), Elementwise.Reference.Add, sets);

    private readonly float[] _a0, _b0;
    private readonly ArrayView<float>[] _a, _b, _y;
    private readonly Func<double[], double[], double[]> _reference;
    private double[] _expected = [];

    private BinaryCase(Device dev, Random rng, string op, long n, Cost cost, Func<double[], double[], double[]> reference, int sets)
        : base(dev, rng, op, $"n={n}", cost, gemm: false, sets)
    {
        _reference = reference;
        _a0 = Rand(n);
        _b0 = Rand(n);
        _a = PerSet(_a0, () => Rand(n));
        _b = PerSet(_b0, () => Rand(n));
        _y = Outputs<float>(n);
    }

    public override void Launch(BinaryLauncher launcher, int set) => launcher(Dev, _a[set], _b[set], _y[set]);
    protected override void Reset() => Poison(_y[0]);
    protected override void ComputeReference() => _expected = _reference(D(_a0), D(_b0));
    protected override IEnumerable<OutputError> Compare() => [Error("y", _expected, _y[0])];
}
