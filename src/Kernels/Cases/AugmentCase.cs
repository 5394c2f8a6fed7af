using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>The launcher signature of the op: any variant of it (the engine's own launcher converts as a method group).</summary>
public delegate void AugmentLauncher(Device dev, ArrayView<byte> images, ArrayView<int> crops, ArrayView<int> flips, ArrayView<float> output,
    ArrayView<float> mean, ArrayView<float> std, int n, int c, int h, int w, int pad);

/// <summary>Random crop (zero padding), horizontal flip and normalisation of random uint8 images into fp32.</summary>
public sealed class AugmentCase : OpCase<AugmentLauncher>, ICheckedCase
{
    public const string OpName = "augment";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in Shapes
        select CaseCheck.Of(OpName, s, (d, r) => new AugmentCase(d, r, s), Default);

    /// <summary>h != w so that a swapped axis shows; one channel; padding as large as the image; CIFAR's own.</summary>
    public static IReadOnlyList<AugmentShape> Shapes { get; } = [new(3, 3, 5, 6, 2), new(2, 1, 4, 4, 4), new(4, 3, 7, 3, 1), new(3, 3, 32, 32, 4)];

    public static AugmentLauncher Default => Augment.Apply;

    /// <summary>CIFAR-10's per-channel mean and std (the seed's Normalize), repeated for more channels.</summary>
    private static readonly float[] Mean = [0.4914f, 0.4822f, 0.4465f], Std = [0.2470f, 0.2435f, 0.2616f];

    private readonly AugmentShape _s;
    private readonly byte[] _images0;
    private readonly int[] _crops0, _flips0;
    private readonly float[] _mean, _std;
    private readonly ArrayView<byte>[] _images;
    private readonly ArrayView<int>[] _crops, _flips;
    private readonly ArrayView<float>[] _out;
    private readonly ArrayView<float> _meanView, _stdView;
    private double[] _expected = [];

    public AugmentCase(Device dev, Random rng, AugmentShape s, int sets = 1)
        : base(dev, rng, OpName, s.ToString(), OpCost.Augment(s.Length), gemm: false, sets)
    {
        _s = s;
        _mean = Enumerable.Range(0, s.C).Select(i => Mean[i % Mean.Length]).ToArray();
        _std = Enumerable.Range(0, s.C).Select(i => Std[i % Std.Length]).ToArray();
        _images0 = Bytes(s.Length);
        _crops0 = Ints(2 * s.N, 2 * s.Pad + 1);
        // Set 0 alternates flipped and plain images, so both occur whenever n > 1.
        int first = Rng.Next(2);
        _flips0 = Enumerable.Range(0, s.N).Select(i => (i + first) % 2).ToArray();
        _images = PerSet(_images0, () => Bytes(s.Length));
        _crops = PerSet(_crops0, () => Ints(2 * s.N, 2 * s.Pad + 1));
        _flips = PerSet(_flips0, () => Ints(s.N, 2));
        _meanView = Upload(_mean);
        _stdView = Upload(_std);
        _out = Outputs<float>(s.Length);
    }

    private byte[] Bytes(long n)
    {
        var b = new byte[n];
        Rng.NextBytes(b);
        return b;
    }

    private int[] Ints(int n, int below) => Enumerable.Range(0, n).Select(_ => Rng.Next(below)).ToArray();

    public override void Launch(AugmentLauncher launcher, int set)
        => launcher(Dev, _images[set], _crops[set], _flips[set], _out[set], _meanView, _stdView, _s.N, _s.C, _s.H, _s.W, _s.Pad);
    protected override void Reset() => Poison(_out[0]);
    protected override void ComputeReference()
        => _expected = Augment.Reference.Apply(_images0, _crops0, _flips0, D(_mean), D(_std), _s.N, _s.C, _s.H, _s.W, _s.Pad);
    protected override IEnumerable<OutputError> Compare() => [Error("out", _expected, _out[0])];
}
