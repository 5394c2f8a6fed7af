using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

/// <summary>16-bit float compression: bit for bit the correctly rounded value (nearest, ties to even), on the device and on the host.</summary>
public class Float16Tests
{
    [Theory]
    [InlineData(Float16Format.Fp16, 1)]
    [InlineData(Float16Format.Fp16, 999)]
    [InlineData(Float16Format.Bf16, 1)]
    [InlineData(Float16Format.Bf16, 1003)]
    public void Compress_and_decompress_round_to_nearest_even_bit_for_bit(Float16Format format, int count) => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        // Random magnitudes over the format's whole range and beyond, both signs, plus the edge cases.
        float[] host = Float16CompressCase.Inputs(rng, count, format);
        const float scale = 0.5f;
        using var x = dev.Upload<float>(host);
        using var y = dev.Upload<ushort>(Enumerable.Repeat((ushort)0xABCD, host.Length).ToArray()); // poisoned
        using var back = Numerics.Poisoned(dev, host.Length);
        Float16.Compress(dev, x.View, y.View, format, scale);
        Float16.Decompress(dev, y.View, back.View, format);
        ushort[] bits = dev.Download<ushort>(y.View);
        float[] decoded = dev.Download<float>(back.View);
        for (int i = 0; i < host.Length; i++)
        {
            double scaled = host[i] * scale; // exact: a power of two
            ushort expected = Float16.Reference.Encode(scaled, format);
            bool nan = double.IsNaN(scaled);
            Assert.True(nan ? IsNan(bits[i], format) : bits[i] == expected, $"{format} of {scaled:R}: 0x{bits[i]:X4}, expected 0x{expected:X4} (seed {seed})");
            double value = Float16.Reference.Decode(bits[i], format);
            Assert.True(nan ? float.IsNaN(decoded[i]) : decoded[i] == (float)value, $"{format} decode of 0x{bits[i]:X4}: {decoded[i]:R}, expected {value:R} (seed {seed})");
            // The host conversion (the host ring reduces with it) agrees with the kernel's.
            Assert.Equal(bits[i], Float16.Encode((float)scaled, format));
        }
    });

    private static bool IsNan(ushort h, Float16Format f) => f == Float16Format.Fp16 ? (h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0 : (h & 0x7F80) == 0x7F80 && (h & 0x7F) != 0;

    [Fact]
    public void The_reference_rounds_ties_to_even()
    {
        // 1 + 2^-11 lies halfway between fp16's 1 and 1 + 2^-10: the even mantissa (1) wins; 1 + 3 x 2^-11 rounds up to 1 + 2^-9.
        Assert.Equal(0x3C00, Float16.Reference.Encode(1 + Math.Pow(2, -11), Float16Format.Fp16));
        Assert.Equal(0x3C02, Float16.Reference.Encode(1 + 3 * Math.Pow(2, -11), Float16Format.Fp16));
        // bf16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
        Assert.Equal(0x3F80, Float16.Reference.Encode(1 + Math.Pow(2, -8), Float16Format.Bf16));
        Assert.Equal(0x3F82, Float16.Reference.Encode(1 + 3 * Math.Pow(2, -8), Float16Format.Bf16));
    }

    [Fact]
    public void Launchers_reject_mismatched_lengths() => TestDevice.Use(dev =>
    {
        using var a = dev.Allocate<float>(4);
        using var b = dev.Allocate<ushort>(5);
        Assert.Contains("Float16.Compress", Assert.Throws<ArgumentException>(() => Float16.Compress(dev, a.View, b.View, Float16Format.Fp16)).Message);
        Assert.Contains("Float16.Decompress", Assert.Throws<ArgumentException>(() => Float16.Decompress(dev, b.View, a.View, Float16Format.Bf16)).Message);
    });
}
