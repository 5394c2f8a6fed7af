using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels.Cases;

/// <summary>The launcher signature of the op: any variant of it (the engine's own launcher converts as a method group).</summary>
public delegate void MaxPoolForwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> y, ArrayView<int> argmax, in Pool2dShape s);

/// <summary>Max-pool forward: y exactly the reference's maximum, argmax exactly its (first in row-major order) index.</summary>
public sealed class MaxPoolForwardCase : OpCase<MaxPoolForwardLauncher>, ICheckedCase
{
    public const string OpName = "maxpool_fwd";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in Shapes
        select CaseCheck.Of(OpName, s, (d, r) => new MaxPoolForwardCase(d, r, s), Default);

    public static IReadOnlyList<Pool2dShape> Shapes { get; } =
    [
        new(2, 3, 7, 7, 3, 2, 1), // torchvision's stem pool on an odd plane
        new(1, 2, 8, 8, 3, 2, 1),
        new(2, 1, 1, 1, 3, 2, 1), // 1x1 input: the window is mostly padding
        new(1, 2, 5, 6, 2, 2, 0),
        new(2, 2, 7, 8, 3, 1, 1), // overlapping windows, stride 1
        new(1, 1, 9, 7, 3, 3, 0),
    ];

    public static MaxPoolForwardLauncher Default => MaxPool2d.Forward;

    private readonly Pool2dShape _s;
    private readonly float[] _x0;
    private readonly ArrayView<float>[] _x, _y;
    private readonly ArrayView<int>[] _arg;
    private (double[] Y, int[] Argmax) _expected = ([], []);

    public MaxPoolForwardCase(Device dev, Random rng, Pool2dShape s, int sets = 1)
        : base(dev, rng, OpName, s.ToString(), OpCost.MaxPoolForward(s), gemm: false, sets)
    {
        _s = s;
        _x0 = Rand(s.InputLength);
        _x = PerSet(_x0, () => Rand(s.InputLength));
        _y = Outputs<float>(s.OutputLength);
        _arg = Outputs<int>(s.OutputLength);
    }

    public override void Launch(MaxPoolForwardLauncher launcher, int set) => launcher(Dev, _x[set], _y[set], _arg[set], _s);

    protected override void Reset()
    {
        Poison(_y[0]);
        if (_s.OutputLength > 0) _arg[0].CopyFromCPU(Dev.Stream, Enumerable.Repeat(-7, (int)_s.OutputLength).ToArray());
    }

    protected override void ComputeReference() => _expected = MaxPool2d.Reference.Forward(D(_x0), _s);

    protected override IEnumerable<OutputError> Compare()
        => [Error("y", _expected.Y, _y[0], rtol: 0, atol: 0), Error("argmax", Array.ConvertAll(_expected.Argmax, i => (double)i), Array.ConvertAll(Dev.Download(_arg[0]), i => (float)i), rtol: 0, atol: 0)];
}
