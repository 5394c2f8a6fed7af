using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class LinearTests
{
    [Fact]
    public void Backward_overwrites_rather_than_accumulates() => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        const int n = 3, inF = 5, outF = 2;
        float[] x = Numerics.Uniform(rng, n * inF), w = Numerics.Uniform(rng, outF * inF), g = Numerics.Uniform(rng, n * outF);
        using var xb = dev.Upload<float>(x);
        using var wb = dev.Upload<float>(w);
        using var gb = dev.Upload<float>(g);
        using var dx = dev.Allocate<float>(n * inF);
        using var dw = dev.Allocate<float>(outF * inF);
        using var db = dev.Allocate<float>(outF);
        Linear.Backward(dev, xb.View, wb.View, gb.View, dx.View, dw.View, db.View, n, inF, outF);
        Linear.Backward(dev, xb.View, wb.View, gb.View, dx.View, dw.View, db.View, n, inF, outF);
        var (ex, ew, eb) = Linear.Reference.Backward(Numerics.ToDouble(x), Numerics.ToDouble(w), Numerics.ToDouble(g), n, inF, outF);
        Numerics.AssertClose(ex, dev.Download<float>(dx.View), what: "linear dx after two calls", seed: seed);
        Numerics.AssertClose(ew, dev.Download<float>(dw.View), what: "linear dw after two calls", seed: seed);
        Numerics.AssertClose(eb, dev.Download<float>(db.View), what: "linear db after two calls", seed: seed);
    });

    [Fact]
    public void Reference_backward_matches_finite_differences()
    {
        var rng = Numerics.NewRandom(out _);
        const int n = 4, inF = 5, outF = 3;
        double[] x = Numerics.ToDouble(Numerics.Uniform(rng, n * inF));
        double[] w = Numerics.ToDouble(Numerics.Uniform(rng, outF * inF));
        double[] b = Numerics.ToDouble(Numerics.Uniform(rng, outF));
        double[] g = Numerics.ToDouble(Numerics.Uniform(rng, n * outF));
        var (dx, dw, db) = Linear.Reference.Backward(x, w, g, n, inF, outF);
        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, Linear.Reference.Forward(v, w, b, n, inF, outF)), x, dx, rng, what: "linear dx");
        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, Linear.Reference.Forward(x, v, b, n, inF, outF)), w, dw, rng, what: "linear dw");
        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, Linear.Reference.Forward(x, w, v, n, inF, outF)), b, db, rng, what: "linear db");
    }

    [Fact]
    public void Launchers_reject_short_operands_and_bad_shapes() => TestDevice.Use(dev =>
    {
        using var x = dev.Allocate<float>(5 * 7);
        using var w = dev.Allocate<float>(3 * 7);
        using var shortW = dev.Allocate<float>(3 * 7 - 1);
        using var b = dev.Allocate<float>(3);
        using var y = dev.Allocate<float>(5 * 3);
        var e = Assert.Throws<ArgumentException>(() => Linear.Forward(dev, x.View, shortW.View, b.View, y.View, 5, 7, 3));
        Assert.Contains("Linear.Forward", e.Message);
        Assert.Contains("'w'", e.Message);
        e = Assert.Throws<ArgumentException>(() => Linear.Forward(dev, x.View, w.View, b.View, y.View, 0, 7, 3));
        Assert.Contains("n=0", e.Message);
        e = Assert.Throws<ArgumentException>(() => Linear.Backward(dev, x.View, w.View, y.View, x.View, w.View, y.View.SubView(0, 2), 5, 7, 3));
        Assert.Contains("'db'", e.Message);
    });
}
