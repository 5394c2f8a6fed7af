using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>The launcher signature of the op: any variant of it (the engine's own launcher converts as a method group).</summary>
public delegate void MaxPoolBackwardLauncher(Device dev, ArrayView<float> dy, ArrayView<int> argmax, ArrayView<float> dx, in Pool2dShape s);

/// <summary>Max-pool backward: dy scattered back through the argmax of a forward over random inputs.</summary>
public sealed class MaxPoolBackwardCase : OpCase<MaxPoolBackwardLauncher>, ICheckedCase
{
    public const string OpName = "maxpool_bwd";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in MaxPoolForwardCase.Shapes
        select CaseCheck.Of(OpName, s, (d, r) => new MaxPoolBackwardCase(d, r, s), Default);

    public static MaxPoolBackwardLauncher Default => MaxPool2d.Backward;

    private readonly Pool2dShape _s;
    private readonly float[] _dy0;
    private readonly int[] _arg0;
    private readonly ArrayView<float>[] _dy, _dx;
    private readonly ArrayView<int>[] _arg;
    private double[] _expected = [];

    public MaxPoolBackwardCase(Device dev, Random rng, Pool2dShape s, int sets = 1)
        : base(dev, rng, OpName, s.ToString(), OpCost.MaxPoolBackward(s), gemm: false, sets)
    {
        _s = s;
        _dy0 = Rand(s.OutputLength);
        _arg0 = MaxPool2d.Reference.Forward(D(Rand(s.InputLength)), s).Argmax;
        _dy = PerSet(_dy0, () => Rand(s.OutputLength));
        _arg = PerSet(_arg0, () => MaxPool2d.Reference.Forward(D(Rand(s.InputLength)), s).Argmax);
        _dx = Outputs<float>(s.InputLength);
    }

    public override void Launch(MaxPoolBackwardLauncher launcher, int set) => launcher(Dev, _dy[set], _arg[set], _dx[set], _s);
    protected override void Reset() => Poison(_dx[0]);
    protected override void ComputeReference() => _expected = MaxPool2d.Reference.Backward(D(_dy0), _arg0, _s);
    protected override IEnumerable<OutputError> Compare() => [Error("dx", _expected, _dx[0])];
}
