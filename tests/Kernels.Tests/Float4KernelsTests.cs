using Engine.Kernels;
using Engine.Tests;
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels.Tests;

/// <summary>
/// The float4 (16-byte load) versions of the memory-bound kernels: against the float64 references, bit
/// for bit against the scalar versions (the same float operations per element), on views that start on
/// a 16-byte boundary but not at their buffer's start, with lengths that leave a tail of 0 to 3 floats;
/// and the launchers' fallback to the scalar kernels for views that are not aligned.
/// </summary>
public class Float4KernelsTests
{
    /// <summary>A view of <paramref name="n"/> poisoned floats inside a larger buffer, 16-byte aligned or (misaligned) 4 bytes past it.</summary>
    private static ArrayView<float> View(Device dev, List<IDisposable> owned, int n, bool aligned, float[]? data = null)
    {
        var buffer = dev.Allocate<float>(n + 12);
        owned.Add(buffer);
        Elementwise.Fill(dev, buffer.View, float.NaN);
        // Element 4 starts 16 bytes in; the buffer itself must start on a 16-byte boundary (every allocator here does).
        const int start = 4;
        Assert.True(Float4Dispatch.IsAligned(buffer.View.SubView(start, n)),
            $"the device's allocation at 0x{Float4Dispatch.Address((ArrayView<float>)buffer.View):x} is not 16-byte aligned");
        var view = buffer.View.SubView(aligned ? start : start + 1, n);
        if (data is not null) view.CopyFromCPU(dev.Stream, data);
        return view;
    }

    private static void Dispose(List<IDisposable> owned) => owned.ForEach(o => o.Dispose());

    [Theory]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(1001)]
    public void Float4_kernels_match_the_reference_and_the_scalar_kernels_exactly(int n) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var owned = new List<IDisposable>();
        try
        {
            float[] a = Numerics.Uniform(rng, n), b = Numerics.Uniform(rng, n);
            var x = View(dev, owned, n, true, a);
            var other = View(dev, owned, n, true, b);

            (ArrayView<float> V4, ArrayView<float> V1) Pair() => (View(dev, owned, n, true), View(dev, owned, n, true));
            void Same(double[] expected, ArrayView<float> v4, ArrayView<float> v1, string what)
            {
                float[] got4 = dev.Download<float>(v4), got1 = dev.Download<float>(v1);
                Numerics.AssertClose(expected, got4, what: $"{what} (float4)", seed: seed);
                Assert.True(got4.SequenceEqual(got1), $"{what}: float4 and scalar kernels differ (seed {seed})");
            }

            var relu = Pair();
            Relu.ForwardFloat4(dev, x, relu.V4);
            Relu.ForwardScalar(dev, x, relu.V1);
            Same(Relu.Reference.Forward(Numerics.ToDouble(a)), relu.V4, relu.V1, "relu_fwd");

            var dx = Pair();
            Relu.BackwardFloat4(dev, relu.V4, other, dx.V4);
            Relu.BackwardScalar(dev, relu.V1, other, dx.V1);
            Same(Relu.Reference.Backward(Relu.Reference.Forward(Numerics.ToDouble(a)), Numerics.ToDouble(b)), dx.V4, dx.V1, "relu_bwd");

            var sum = Pair();
            Elementwise.AddFloat4(dev, x, other, sum.V4);
            Elementwise.AddScalar(dev, x, other, sum.V1);
            Same(Elementwise.Reference.Add(Numerics.ToDouble(a), Numerics.ToDouble(b)), sum.V4, sum.V1, "add_fwd");

            var acc = View(dev, owned, n, true, a);
            Elementwise.Accumulate(dev, acc, other);
            Numerics.AssertClose(Elementwise.Reference.Add(Numerics.ToDouble(a), Numerics.ToDouble(b)), dev.Download<float>(acc), what: "accumulate", seed: seed);

            var filled = View(dev, owned, n, true);
            Elementwise.Fill(dev, filled, 0.25f);
            Assert.All(dev.Download<float>(filled), v => Assert.Equal(0.25f, v));

            // Three SGD steps with momentum and weight decay; the buffer starts poisoned (first step must not read it).
            double[] refP = Numerics.ToDouble(a), refBuf = new double[n];
            var p4 = View(dev, owned, n, true, a);
            var p1 = View(dev, owned, n, true, a);
            var buf4 = View(dev, owned, n, true);
            var buf1 = View(dev, owned, n, true);
            for (int step = 0; step < 3; step++)
            {
                float[] g = Numerics.Uniform(rng, n);
                var grad = View(dev, owned, n, true, g);
                Sgd.StepFloat4(dev, p4, grad, buf4, 0.1f, 0.9f, 5e-4f, firstStep: step == 0);
                Sgd.StepScalar(dev, p1, grad, buf1, 0.1f, 0.9f, 5e-4f, firstStep: step == 0);
                Sgd.Reference.Step(refP, Numerics.ToDouble(g), refBuf, 0.1f, 0.9f, 5e-4f, firstStep: step == 0);
                Same(refP, p4, p1, $"sgd param after step {step}");
                Same(refBuf, buf4, buf1, $"sgd momentum after step {step}");
            }
        }
        finally
        {
            Dispose(owned);
        }
    });

    [Fact]
    public void Misaligned_views_take_the_scalar_kernels_and_the_float4_launchers_refuse_them() => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var owned = new List<IDisposable>();
        try
        {
            const int n = 37;
            float[] a = Numerics.Uniform(rng, n), b = Numerics.Uniform(rng, n);
            var x = View(dev, owned, n, false, a);
            var other = View(dev, owned, n, false, b);
            var y = View(dev, owned, n, false);
            Assert.False(Float4Dispatch.IsAligned(x));

            Relu.Forward(dev, x, y);
            Numerics.AssertClose(Relu.Reference.Forward(Numerics.ToDouble(a)), dev.Download<float>(y), what: "relu_fwd misaligned", seed: seed);
            Elementwise.Add(dev, x, other, y);
            Numerics.AssertClose(Elementwise.Reference.Add(Numerics.ToDouble(a), Numerics.ToDouble(b)), dev.Download<float>(y), what: "add misaligned", seed: seed);

            var e = Assert.Throws<ArgumentException>(() => Relu.ForwardFloat4(dev, x, y));
            Assert.Contains("16-byte", e.Message);
            Assert.Throws<ArgumentException>(() => Elementwise.AddFloat4(dev, x, other, y));
            Assert.Throws<ArgumentException>(() => Sgd.StepFloat4(dev, x, other, y, 0.1f, 0.9f, 0f, true));
        }
        finally
        {
            Dispose(owned);
        }
    });

    [Theory]
    [InlineData(null, true)]
    [InlineData("1", true)]
    [InlineData("0", false)]
    [InlineData(" off ", false)]
    [InlineData("FALSE", false)]
    public void ENGINE_FLOAT4_turns_the_float4_kernels_off(string? value, bool enabled) => Assert.Equal(enabled, Float4Dispatch.EnabledBy(value));
}
