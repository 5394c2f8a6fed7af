using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels.Cases;

/// <summary>float32 -> 16 bits: y = 16-bit(x · scale) (<see cref="Float16.Compress"/>).</summary>
public delegate void Float16CompressLauncher(Device dev, ArrayView<float> x, ArrayView<ushort> y, Float16Format format, float scale);

/// <summary>16 bits -> float32 (<see cref="Float16.Decompress"/>).</summary>
public delegate void Float16DecompressLauncher(Device dev, ArrayView<ushort> x, ArrayView<float> y, Float16Format format);

/// <summary>
/// The 16-bit compression of the fp16 and bf16 communication hooks: the bits the kernel writes must be the correctly
/// rounded value (nearest, ties to even) of x · scale, exactly; x spans the format's whole range and beyond (subnormals,
/// overflow to infinity) plus the values where rounding is decided (<see cref="Edges"/>).
/// </summary>
public sealed class Float16CompressCase : OpCase<Float16CompressLauncher>, ICheckedCase
{
    /// <summary>Lengths: one element, an odd count, many.</summary>
    public static IReadOnlyList<long> Lengths { get; } = [1, 37, 1001];

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from format in new[] { Float16Format.Fp16, Float16Format.Bf16 }
        from n in Lengths
        select CaseCheck.Of("float16_compress", $"n={n} {format}", (d, r) => Of(d, r, n, format), (Float16CompressLauncher)Float16.Compress);

    /// <summary><paramref name="n"/> random values (then the edges, NaN left out) in <paramref name="format"/>.</summary>
    public static Float16CompressCase Of(Device dev, Random rng, long n, Float16Format format) => new(dev, rng, n, format);

    /// <summary>Values where rounding is decided: ties, the subnormal range, overflow, the signs, infinities, NaN.</summary>
    public static float[] Edges(Float16Format f) => f == Float16Format.Fp16
        ? [0f, -0f, 1f, -2.5f, 65504f, 65519.99f, 65520f, 1e6f, -1e6f, 6.1035156e-5f, 6.0975552e-5f, 5.9604645e-8f, 2.9802322e-8f, 2.9802326e-8f, 1e-10f,
            1.0009766f, 1.0004883f, 1.0014648f, float.PositiveInfinity, float.NegativeInfinity, float.NaN]
        : [0f, -0f, 1f, -2.5f, 1.00390625f, 1.01171875f, 3.3895314e38f, 3.4028235e38f, 1e-38f, 1e-45f, float.PositiveInfinity, float.NegativeInfinity, float.NaN];

    /// <summary><paramref name="count"/> random magnitudes from 2^-30 to 2^19, both signs, then the edges.</summary>
    public static float[] Inputs(Random rng, int count, Float16Format format) =>
        Enumerable.Range(0, count).Select(_ => (float)((rng.NextDouble() - 0.5) * Math.Pow(2, rng.Next(-30, 20)))).Concat(Edges(format)).ToArray();

    /// <summary>The communication hooks divide by the world size; a power of two keeps x · scale exact in float32.</summary>
    private const float Scale = 0.5f;

    private readonly Float16Format _format;
    private readonly float[] _x0;
    private readonly ArrayView<float>[] _x;
    private readonly ArrayView<ushort>[] _y;
    private double[] _expected = [];

    private Float16CompressCase(Device dev, Random rng, long n, Float16Format format)
        : base(dev, rng, "float16_compress", $"n={n} {format}", new Cost(n, n * (sizeof(float) + sizeof(ushort))), gemm: false, sets: 1)
    {
        _format = format;
        // NaN in, some NaN out: its bits are not unique, so the exact comparison leaves it to Float16Tests.
        _x0 = Inputs(rng, (int)n, format).Where(v => !float.IsNaN(v)).ToArray();
        _x = PerSet(_x0, () => _x0);
        _y = Outputs<ushort>(_x0.Length);
    }

    public override void Launch(Float16CompressLauncher launcher, int set) => launcher(Dev, _x[set], _y[set], _format, Scale);

    protected override void Reset() => _y[0].CopyFromCPU(Dev.Stream, Enumerable.Repeat((ushort)0xABCD, (int)_y[0].Length).ToArray());

    protected override void ComputeReference() => _expected = _x0.Select(v => (double)Float16.Reference.Encode(v * Scale, _format)).ToArray();

    /// <summary>The bit patterns, compared as integers (exact in a double) with no tolerance.</summary>
    protected override IEnumerable<OutputError> Compare() =>
        [Error("y", _expected, Dev.Download(_y[0]).Select(b => (float)b).ToArray(), rtol: 0, atol: 0)];
}

/// <summary>16 bits back to float32: every finite bit pattern of the format decodes to its exact value.</summary>
public sealed class Float16DecompressCase : OpCase<Float16DecompressLauncher>, ICheckedCase
{
    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from format in new[] { Float16Format.Fp16, Float16Format.Bf16 }
        from n in Float16CompressCase.Lengths
        select CaseCheck.Of("float16_decompress", $"n={n} {format}", (d, r) => Of(d, r, n, format), (Float16DecompressLauncher)Float16.Decompress);

    /// <summary><paramref name="n"/> random finite bit patterns of <paramref name="format"/>.</summary>
    public static Float16DecompressCase Of(Device dev, Random rng, long n, Float16Format format) => new(dev, rng, n, format);

    private readonly Float16Format _format;
    private readonly ushort[] _x0;
    private readonly ArrayView<ushort>[] _x;
    private readonly ArrayView<float>[] _y;
    private double[] _expected = [];

    private Float16DecompressCase(Device dev, Random rng, long n, Float16Format format)
        : base(dev, rng, "float16_decompress", $"n={n} {format}", new Cost(0, n * (sizeof(float) + sizeof(ushort))), gemm: false, sets: 1)
    {
        _format = format;
        // Random patterns whose exponent is not all ones (infinities and NaN), including subnormals and both zeros.
        ushort exponentMask = format == Float16Format.Fp16 ? (ushort)0x7C00 : (ushort)0x7F80;
        _x0 = Enumerable.Range(0, (int)n).Select(_ =>
        {
            ushort h;
            do h = (ushort)rng.Next(0, 1 << 16);
            while ((h & exponentMask) == exponentMask);
            return h;
        }).ToArray();
        _x = PerSet(_x0, () => _x0);
        _y = Outputs<float>(n);
    }

    public override void Launch(Float16DecompressLauncher launcher, int set) => launcher(Dev, _x[set], _y[set], _format);

    protected override void Reset() => Poison(_y[0]);

    protected override void ComputeReference() => _expected = _x0.Select(h => Float16.Reference.Decode(h, _format)).ToArray();

    protected override IEnumerable<OutputError> Compare() => [Error("y", _expected, _y[0], rtol: 0, atol: 0)];
}
