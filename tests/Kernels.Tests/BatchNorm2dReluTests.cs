using Engine.Kernels;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class BatchNorm2dReluTests
{
    private sealed record Inputs(float[] X, float[] Gamma, float[] Beta, float[] RunningMean, float[] RunningVar);

    /// <summary>
    /// Channels sit off zero (mean about 3); beta in [-1, 1] so that a good part of y is clipped by the
    /// ReLU, and beta = 0 on channel 0, whose training output then has both signs (xhat sums to zero).
    /// </summary>
    private static Inputs NewInputs(Random rng, int n, int c, int hw)
    {
        float[] x = Numerics.Uniform(rng, n * c * hw);
        for (int i = 0; i < x.Length; i++) x[i] += 3f + i / hw % c;
        float[] beta = Numerics.Uniform(rng, c);
        beta[0] = 0f;
        return new Inputs(x, Numerics.Uniform(rng, c, 0.5f, 1.5f), beta,
            Numerics.Uniform(rng, c, 2.5f, 4.5f), Numerics.Uniform(rng, c, 0.5f, 2f));
    }

    [Theory]
    [InlineData(3, 5, 7)]
    [InlineData(2, 3, 1)]
    [InlineData(1, 2, 9)]
    [InlineData(5, 3, 61)]   // several parts per channel on the CPU plan, last one shorter
    [InlineData(4, 2, 64)]
    public void ForwardTrainRelu_matches_reference(int n, int c, int hw) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        using var x = dev.Upload<float>(a.X);
        using var gamma = dev.Upload<float>(a.Gamma);
        using var beta = dev.Upload<float>(a.Beta);
        using var runningMean = dev.Upload<float>(a.RunningMean);
        using var runningVar = dev.Upload<float>(a.RunningVar);
        using var y = Numerics.Poisoned(dev, a.X.Length);
        using var saveMean = Numerics.Poisoned(dev, c);
        using var saveInvStd = Numerics.Poisoned(dev, c);

        BatchNorm2d.ForwardTrainRelu(dev, x.View, gamma.View, beta.View, y.View, saveMean.View, saveInvStd.View,
            runningMean.View, runningVar.View, n, c, hw, momentum: 0.1f, eps: 1e-5f);

        var r = BatchNorm2d.Reference.ForwardTrainRelu(Numerics.ToDouble(a.X), Numerics.ToDouble(a.Gamma), Numerics.ToDouble(a.Beta),
            Numerics.ToDouble(a.RunningMean), Numerics.ToDouble(a.RunningVar), n, c, hw, momentum: 0.1, eps: 1e-5);
        float[] yHost = dev.Download<float>(y.View);
        BatchNormAsserts.TrainForward(r, a.X, a.Gamma, a.Beta, yHost, dev.Download<float>(saveMean.View), dev.Download<float>(saveInvStd.View),
            n, c, hw, Relu.Reference.Forward, "bn+relu", seed);
        Assert.All(yHost, v => Assert.True(v >= 0f));
        Numerics.AssertClose(r.RunningMean, dev.Download<float>(runningMean.View), what: "bn+relu runningMean", seed: seed);
        Numerics.AssertClose(r.RunningVar, dev.Download<float>(runningVar.View), what: "bn+relu runningVar", seed: seed);
    });

    /// <summary>The fused output equals the unfused kernels' bn then relu, bit for bit: the same float operations.</summary>
    [Fact]
    public void ForwardTrainRelu_equals_unfused_kernels_exactly() => WideGroupDevice.Both(dev =>
    {
        const int n = 3, c = 4, hw = 10;
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        using var x = dev.Upload<float>(a.X);
        using var gamma = dev.Upload<float>(a.Gamma);
        using var beta = dev.Upload<float>(a.Beta);
        using var rm = dev.Upload<float>(a.RunningMean);
        using var rv = dev.Upload<float>(a.RunningVar);
        using var stats = dev.Allocate<float>(2 * c);
        using var fused = Numerics.Poisoned(dev, a.X.Length);
        using var unfused = Numerics.Poisoned(dev, a.X.Length);

        BatchNorm2d.ForwardTrainRelu(dev, x.View, gamma.View, beta.View, fused.View, stats.View.SubView(0, c), stats.View.SubView(c, c), rm.View, rv.View, n, c, hw);
        BatchNorm2d.ForwardTrain(dev, x.View, gamma.View, beta.View, unfused.View, stats.View.SubView(0, c), stats.View.SubView(c, c), rm.View, rv.View, n, c, hw);
        Relu.Forward(dev, unfused.View, unfused.View);

        Assert.True(dev.Download<float>(unfused.View).SequenceEqual(dev.Download<float>(fused.View)), $"fused and unfused differ (seed {seed})");
    });

    [Theory]
    [InlineData(3, 5, 7, false)]
    [InlineData(2, 3, 1, false)]
    [InlineData(1, 1, 1, true)]
    [InlineData(2, 4, 9, true)]
    public void ForwardEvalRelu_matches_reference(int n, int c, int hw, bool inPlace) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        using var x = dev.Upload<float>(a.X);
        using var gamma = dev.Upload<float>(a.Gamma);
        using var beta = dev.Upload<float>(a.Beta);
        using var runningMean = dev.Upload<float>(a.RunningMean);
        using var runningVar = dev.Upload<float>(a.RunningVar);
        using var yBuffer = Numerics.Poisoned(dev, a.X.Length);
        var y = inPlace ? x.View : yBuffer.View;

        BatchNorm2d.ForwardEvalRelu(dev, x.View, gamma.View, beta.View, runningMean.View, runningVar.View, y, n, c, hw);

        var expected = BatchNorm2d.Reference.ForwardEvalRelu(Numerics.ToDouble(a.X), Numerics.ToDouble(a.Gamma), Numerics.ToDouble(a.Beta),
            Numerics.ToDouble(a.RunningMean), Numerics.ToDouble(a.RunningVar), n, c, hw);
        Numerics.AssertClose(expected, dev.Download<float>(y), what: "bn+relu eval y", seed: seed);
    });

    [Theory]
    [InlineData(3, 5, 7)]
    [InlineData(4, 3, 1)]
    [InlineData(5, 3, 61)]
    [InlineData(2, 2, 33)]
    public void BackwardRelu_matches_reference(int n, int c, int hw) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        float[] dyHost = Numerics.Uniform(rng, a.X.Length);
        var fwd = BatchNorm2d.Reference.ForwardTrainRelu(Numerics.ToDouble(a.X), Numerics.ToDouble(a.Gamma), Numerics.ToDouble(a.Beta),
            Numerics.ToDouble(a.RunningMean), Numerics.ToDouble(a.RunningVar), n, c, hw);
        float[] yHost = Array.ConvertAll(fwd.Y, v => (float)v);
        float[] meanHost = Array.ConvertAll(fwd.SaveMean, v => (float)v);
        float[] invStdHost = Array.ConvertAll(fwd.SaveInvStd, v => (float)v);
        Assert.Contains(yHost, v => v == 0f);
        Assert.Contains(yHost, v => v > 0f);

        using var x = dev.Upload<float>(a.X);
        using var y = dev.Upload<float>(yHost);
        using var dy = dev.Upload<float>(dyHost);
        using var gamma = dev.Upload<float>(a.Gamma);
        using var saveMean = dev.Upload<float>(meanHost);
        using var saveInvStd = dev.Upload<float>(invStdHost);
        using var dx = Numerics.Poisoned(dev, a.X.Length);
        using var dgamma = Numerics.Poisoned(dev, c);
        using var dbeta = Numerics.Poisoned(dev, c);

        BatchNorm2d.BackwardRelu(dev, x.View, y.View, dy.View, gamma.View, saveMean.View, saveInvStd.View, dx.View, dgamma.View, dbeta.View, n, c, hw);

        var r = BatchNorm2d.Reference.BackwardRelu(Numerics.ToDouble(a.X), Numerics.ToDouble(yHost), Numerics.ToDouble(dyHost), Numerics.ToDouble(a.Gamma),
            Numerics.ToDouble(meanHost), Numerics.ToDouble(invStdHost), n, c, hw);
        // dgamma and dbeta are sums of m terms of size ~1 that can cancel to near zero: absolute slack grows with m.
        double sumAtol = 1e-5 + 1e-7 * n * hw;
        Numerics.AssertClose(r.Dbeta, dev.Download<float>(dbeta.View), atol: sumAtol, what: "bn+relu dbeta", seed: seed);
        Numerics.AssertClose(r.Dgamma, dev.Download<float>(dgamma.View), atol: sumAtol, what: "bn+relu dgamma", seed: seed);
        Numerics.AssertClose(r.Dx, dev.Download<float>(dx.View), what: "bn+relu dx", seed: seed);
        Assert.True(dev.Download<float>(dy.View).SequenceEqual(dyHost), "dy must be left as it was");
    });

    /// <summary>
    /// Finite differences of f = dot(g, relu(bn(x))) against the fused backward reference. x is drawn so
    /// that no bn(x) sits within 1e-3 of the kink, where a central difference would straddle it.
    /// </summary>
    [Theory]
    [InlineData(2, 3, 5)]
    [InlineData(4, 2, 1)]
    public void BackwardRelu_reference_matches_finite_differences(int n, int c, int hw)
    {
        var rng = Numerics.NewRandom(out int seed);
        Inputs a;
        BatchNorm2d.Reference.TrainResult fwd;
        double[] x, gamma, beta, rm, rv;
        do
        {
            a = NewInputs(rng, n, c, hw);
            x = Numerics.ToDouble(a.X); gamma = Numerics.ToDouble(a.Gamma); beta = Numerics.ToDouble(a.Beta);
            rm = Numerics.ToDouble(a.RunningMean); rv = Numerics.ToDouble(a.RunningVar);
            fwd = BatchNorm2d.Reference.ForwardTrain(x, gamma, beta, rm, rv, n, c, hw);
        } while (fwd.Y.Any(v => Math.Abs(v) < 1e-3) || !fwd.Y.Any(v => v < 0) || !fwd.Y.Any(v => v > 0));
        double[] g = Numerics.ToDouble(Numerics.Uniform(rng, x.Length));
        double[] y = Relu.Reference.Forward(fwd.Y);

        var grads = BatchNorm2d.Reference.BackwardRelu(x, y, g, gamma, fwd.SaveMean, fwd.SaveInvStd, n, c, hw);

        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, BatchNorm2d.Reference.ForwardTrainRelu(v, gamma, beta, rm, rv, n, c, hw).Y),
            x, grads.Dx, rng, samples: 20, what: $"bn+relu dx (seed {seed})");
        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, BatchNorm2d.Reference.ForwardTrainRelu(x, v, beta, rm, rv, n, c, hw).Y),
            gamma, grads.Dgamma, rng, what: $"bn+relu dgamma (seed {seed})");
        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, BatchNorm2d.Reference.ForwardTrainRelu(x, gamma, v, rm, rv, n, c, hw).Y),
            beta, grads.Dbeta, rng, what: $"bn+relu dbeta (seed {seed})");
    }

    [Fact]
    public void Launchers_reject_bad_arguments() => TestDevice.Use(dev =>
    {
        const int n = 2, c = 3, hw = 4;
        using var x = dev.Allocate<float>(n * c * hw);
        using var y = dev.Allocate<float>(n * c * hw);
        using var dy = dev.Allocate<float>(n * c * hw);
        using var dx = dev.Allocate<float>(n * c * hw);
        using var shortY = dev.Allocate<float>(n * c * hw - 1);
        using var ch = dev.Allocate<float>(c);
        using var shortCh = dev.Allocate<float>(c - 1);
        var v = ch.View;

        var e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardTrainRelu(dev, x.View, v, v, shortY.View, v, v, v, v, n, c, hw));
        Assert.Contains("BatchNorm2d.ForwardTrainRelu", e.Message);
        Assert.Contains("'y'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardTrainRelu(dev, x.View, v, v, x.View, v, v, v, v, n, c, hw));
        Assert.Contains("overlaps", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardEvalRelu(dev, x.View, v, v, v, shortCh.View, y.View, n, c, hw));
        Assert.Contains("BatchNorm2d.ForwardEvalRelu", e.Message);
        Assert.Contains("'runningVar'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.BackwardRelu(dev, x.View, y.View, dy.View, v, v, v, y.View, v, v, n, c, hw));
        Assert.Contains("'dx' overlaps 'y'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.BackwardRelu(dev, x.View, y.View, dy.View, v, v, v, dy.View, v, v, n, c, hw));
        Assert.Contains("'dx' overlaps 'dy'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.BackwardRelu(dev, x.View, shortY.View, dy.View, v, v, v, dx.View, v, v, n, c, hw));
        Assert.Contains("BatchNorm2d.BackwardRelu", e.Message);
        Assert.Contains("'y'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.BackwardRelu(dev, x.View, y.View, dy.View, v, v, shortCh.View, dx.View, v, v, n, c, hw));
        Assert.Contains("'saveInvStd'", e.Message);
    });
}
