using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>The 16-bit float formats gradients are compressed to for communication (torch.float16, torch.bfloat16).</summary>
public enum Float16Format
{
    /// <summary>IEEE binary16: 5 exponent bits, 10 mantissa bits (range +-65504).</summary>
    Fp16,

    /// <summary>bfloat16: float32's 8 exponent bits, 7 mantissa bits (float32's range, 3 significant digits).</summary>
    Bf16,
}

/// <summary>
/// float32 to and from 16-bit floats, rounding to nearest, ties to even (as torch's <c>.to(torch.float16)</c>):
/// the conversions (usable in kernels and on the host), and the kernels DDP's compression hooks run on a bucket
/// before and after its 16-bit all-reduce.
/// </summary>
public static class Float16
{
    /// <summary>The 16 bits of <paramref name="x"/> in <paramref name="format"/>, rounded to nearest even; NaN stays NaN, overflow becomes infinity.</summary>
    public static ushort Encode(float x, Float16Format format) => format == Float16Format.Fp16 ? EncodeFp16(x) : EncodeBf16(x);

    /// <summary>The float32 value of <paramref name="h"/> (exact: every 16-bit value is a float32).</summary>
    public static float Decode(ushort h, Float16Format format) => format == Float16Format.Fp16 ? DecodeFp16(h) : Interop.IntAsFloat((uint)h << 16);

    private static ushort EncodeBf16(float x)
    {
        uint u = Interop.FloatAsInt(x);
        if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (ushort)((u >> 16) | 0x40u); // a quiet NaN
        return (ushort)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }

    private static ushort EncodeFp16(float value)
    {
        uint u = Interop.FloatAsInt(value);
        uint sign = u & 0x80000000u;
        u ^= sign;
        uint o;
        if (u >= 0x47800000u)
        {
            // 65536 and above (after rounding, 65520 and above overflow in the normal path below), infinity, NaN.
            o = u > 0x7F800000u ? 0x7E00u : 0x7C00u;
        }
        else if (u < 0x38800000u)
        {
            // Below fp16's smallest normal (2^-14): adding 0.5 lines the fp16 subnormal's bits up with float32's
            // mantissa, and float32's own round-to-nearest-even does the rounding.
            float f = Interop.IntAsFloat(u) + 0.5f;
            o = Interop.FloatAsInt(f) - 0x3F000000u;
        }
        else
        {
            uint odd = (u >> 13) & 1u;
            u += 0xC8000FFFu; // rebias the exponent (15 - 127) << 23, plus half an fp16 ulp minus one
            u += odd;         // ties to even
            o = u >> 13;
        }
        return (ushort)(o | (sign >> 16));
    }

    private static float DecodeFp16(ushort h)
    {
        uint sign = (uint)(h & 0x8000) << 16, exponent = (uint)(h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
        if (exponent == 0)
        {
            float sub = mantissa * 5.9604644775390625e-8f; // mantissa x 2^-24, exact
            return Interop.IntAsFloat(Interop.FloatAsInt(sub) | sign);
        }
        if (exponent == 31) return Interop.IntAsFloat(sign | 0x7F800000u | (mantissa << 13));
        return Interop.IntAsFloat(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    }

    // ---- kernels ----

    [KernelName("float16_compress")]
    internal static void CompressKernel(Index1D index, ArrayView<float> x, ArrayView<ushort> y, float scale, int format, int n, int stride)
    {
        var f = (Float16Format)format;
        for (int i = index; i < n; i += stride) y[i] = Encode(x[i] * scale, f);
    }

    [KernelName("float16_decompress")]
    internal static void DecompressKernel(Index1D index, ArrayView<ushort> x, ArrayView<float> y, int format, int n, int stride)
    {
        var f = (Float16Format)format;
        for (int i = index; i < n; i += stride) y[i] = Decode(x[i], f);
    }

    // ---- launchers ----

    /// <summary>y = 16-bit(x * scale): PyTorch's fp16_compress_hook divides by the world size before the all-reduce, so the sum cannot overflow.</summary>
    public static void Compress(Device dev, ArrayView<float> x, ArrayView<ushort> y, Float16Format format, float scale = 1f)
    {
        using var profile = dev.Profile("float16_compress", new Cost(x.Length, x.Length * (sizeof(float) + sizeof(ushort))));
        if (x.Length != y.Length) throw new ArgumentException($"Float16.Compress: {x.Length} floats into {y.Length} 16-bit values.");
        if (x.Length == 0) return;
        int count = checked((int)x.Length), threads = dev.GridStrideThreads(count);
        dev.Kernel("float16_compress", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<ushort>, float, int, int, int>(CompressKernel))
            (dev.Stream, threads, x, y, scale, (int)format, count, threads);
    }

    /// <summary>y = float32(x).</summary>
    public static void Decompress(Device dev, ArrayView<ushort> x, ArrayView<float> y, Float16Format format)
    {
        using var profile = dev.Profile("float16_decompress", new Cost(0, x.Length * (sizeof(float) + sizeof(ushort))));
        if (x.Length != y.Length) throw new ArgumentException($"Float16.Decompress: {x.Length} 16-bit values into {y.Length} floats.");
        if (x.Length == 0) return;
        int count = checked((int)x.Length), threads = dev.GridStrideThreads(count);
        dev.Kernel("float16_decompress", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<ushort>, ArrayView<float>, int, int, int>(DecompressKernel))
            (dev.Stream, threads, x, y, (int)format, count, threads);
    }

    /// <summary>
    /// The float64 reference: the representable 16-bit value nearest to x (ties to the even mantissa), found by
    /// arithmetic on doubles rather than by bit tricks. fp16 through .NET's correctly rounded <see cref="System.Half"/>.
    /// </summary>
    public static class Reference
    {
        public static ushort Encode(double x, Float16Format format) => format == Float16Format.Fp16
            ? BitConverter.HalfToUInt16Bits((System.Half)x)
            : EncodeBf16(x);

        public static double Decode(ushort h, Float16Format format) => format == Float16Format.Fp16
            ? (double)BitConverter.UInt16BitsToHalf(h)
            : BitConverter.Int32BitsToSingle(h << 16);

        private static ushort EncodeBf16(double x)
        {
            if (double.IsNaN(x)) return 0x7FC0;
            float f = (float)x; // the tests pass float32 values, which this keeps exactly
            uint bits = BitConverter.SingleToUInt32Bits(f);
            if (float.IsInfinity(f)) return (ushort)(bits >> 16);
            ushort down = (ushort)(bits >> 16), up = (ushort)(down + 1);
            double dDown = Math.Abs(Decode(down, Float16Format.Bf16) - x), dUp = Math.Abs(Decode(up, Float16Format.Bf16) - x);
            if (dDown < dUp) return down;
            if (dUp < dDown) return up;
            return (down & 1) == 0 ? down : up;
        }
    }
}
