using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class ReluTests
{
    /// <summary>y written over x and dx over dy, as the layers do where the input is not kept.</summary>
    [Theory]
    [InlineData(37, true)]
    [InlineData(1001, true)]
    public void Forward_and_backward_in_place_match_reference(int count, bool inPlace) => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        float[] xHost = Numerics.Uniform(rng, count), dyHost = Numerics.Uniform(rng, count);
        using var x = dev.Upload<float>(xHost);
        using var dy = dev.Upload<float>(dyHost);
        using var yBuffer = Numerics.Poisoned(dev, count);
        using var dxBuffer = Numerics.Poisoned(dev, count);
        var y = inPlace ? x.View : yBuffer.View;
        var dx = inPlace ? dy.View : dxBuffer.View;

        Relu.Forward(dev, x.View, y);
        Relu.Backward(dev, y, dy.View, dx);

        double[] yRef = Relu.Reference.Forward(Numerics.ToDouble(xHost));
        Numerics.AssertClose(yRef, dev.Download<float>(y), what: "relu y", seed: seed);
        Numerics.AssertClose(Relu.Reference.Backward(yRef, Numerics.ToDouble(dyHost)), dev.Download<float>(dx), what: "relu dx", seed: seed);
    });

    [Fact]
    public void Backward_reference_matches_finite_differences()
    {
        var rng = Numerics.NewRandom(out int seed);
        // Keep inputs away from the kink at 0, where the derivative is undefined.
        double[] x = Numerics.ToDouble(Numerics.Uniform(rng, 40));
        for (int i = 0; i < x.Length; i++) x[i] += x[i] >= 0 ? 0.01 : -0.01;
        double[] g = Numerics.ToDouble(Numerics.Uniform(rng, x.Length));
        double[] analytic = Relu.Reference.Backward(Relu.Reference.Forward(x), g);
        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, Relu.Reference.Forward(v)), x, analytic, rng, samples: 40, what: $"relu dx (seed {seed})");
    }

    [Fact]
    public void Launchers_reject_mismatched_lengths() => TestDevice.Use(dev =>
    {
        using var a = dev.Allocate<float>(4);
        using var b = dev.Allocate<float>(5);
        var e = Assert.Throws<ArgumentException>(() => Relu.Forward(dev, a.View, b.View));
        Assert.Contains("Relu.Forward", e.Message);
        e = Assert.Throws<ArgumentException>(() => Relu.Backward(dev, a.View, a.View, b.View));
        Assert.Contains("Relu.Backward", e.Message);
    });
}
