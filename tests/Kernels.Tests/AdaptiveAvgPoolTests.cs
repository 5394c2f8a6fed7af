using Engine.Kernels;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class AdaptiveAvgPoolTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(15, 7)]
    [InlineData(6, 49)]
    [InlineData(10, 16)]
    public void Forward_and_backward_match_reference(int nc, int hw) => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        float[] xHost = Numerics.Uniform(rng, nc * hw), dyHost = Numerics.Uniform(rng, nc);
        using var x = dev.Upload<float>(xHost);
        using var dy = dev.Upload<float>(dyHost);
        using var y = Numerics.Poisoned(dev, nc);
        using var dx = Numerics.Poisoned(dev, nc * hw);

        AdaptiveAvgPool.Forward(dev, x.View, y.View, nc, hw);
        AdaptiveAvgPool.Backward(dev, dy.View, dx.View, nc, hw);

        Numerics.AssertClose(AdaptiveAvgPool.Reference.Forward(Numerics.ToDouble(xHost), nc, hw), dev.Download<float>(y.View), what: "avgpool y", seed: seed);
        Numerics.AssertClose(AdaptiveAvgPool.Reference.Backward(Numerics.ToDouble(dyHost), nc, hw), dev.Download<float>(dx.View), what: "avgpool dx", seed: seed);
    });

    [Fact]
    public void Backward_reference_matches_finite_differences()
    {
        const int nc = 4, hw = 9;
        var rng = Numerics.NewRandom(out int seed);
        double[] x = Numerics.ToDouble(Numerics.Uniform(rng, nc * hw));
        double[] g = Numerics.ToDouble(Numerics.Uniform(rng, nc));
        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, AdaptiveAvgPool.Reference.Forward(v, nc, hw)),
            x, AdaptiveAvgPool.Reference.Backward(g, nc, hw), rng, samples: nc * hw, what: $"avgpool dx (seed {seed})");
    }

    [Fact]
    public void Launchers_reject_bad_arguments() => TestDevice.Use(dev =>
    {
        using var x = dev.Allocate<float>(11);
        using var y = dev.Allocate<float>(3);
        var e = Assert.Throws<ArgumentException>(() => AdaptiveAvgPool.Forward(dev, x.View, y.View, 3, 4));
        Assert.Contains("AdaptiveAvgPool.Forward", e.Message);
        Assert.Contains("'x'", e.Message);
        e = Assert.Throws<ArgumentException>(() => AdaptiveAvgPool.Backward(dev, y.View, x.View, 4, 2));
        Assert.Contains("'dy'", e.Message);
        e = Assert.Throws<ArgumentException>(() => AdaptiveAvgPool.Forward(dev, x.View, y.View, 3, 0));
        Assert.Contains("hw > 0", e.Message);
    });
}
