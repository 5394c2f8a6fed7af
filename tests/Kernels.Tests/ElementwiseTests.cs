using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class ElementwiseTests
{
    [Fact]
    public void Scale_and_accumulate_match_reference() => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        float[] a = Numerics.Uniform(rng, 37), b = Numerics.Uniform(rng, 37);
        using var da = dev.Upload<float>(a);
        using var db = dev.Upload<float>(b);
        Elementwise.Accumulate(dev, da.View, db.View);
        Elementwise.Scale(dev, da.View, 0.5f);
        var expected = new double[37];
        for (int i = 0; i < 37; i++) expected[i] = 0.5 * ((double)a[i] + b[i]);
        Numerics.AssertClose(expected, dev.Download<float>(da.View), what: "scale(accumulate)", seed: seed);
    });

    [Fact]
    public void Add_rejects_mismatched_lengths() => TestDevice.Use(dev =>
    {
        using var a = dev.Allocate<float>(4);
        using var b = dev.Allocate<float>(5);
        var e = Assert.Throws<ArgumentException>(() => Elementwise.Add(dev, a.View, b.View, a.View));
        Assert.Contains("Add", e.Message);
    });
}
