using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class AdaptiveAvgPoolTests
{
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
