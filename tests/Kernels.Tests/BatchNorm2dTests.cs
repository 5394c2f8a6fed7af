using Engine.Kernels;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class BatchNorm2dTests
{
    private sealed record Inputs(float[] X, float[] Gamma, float[] Beta, float[] RunningMean, float[] RunningVar);

    /// <summary>Channels sit off zero (mean about 3) so a naive sum-of-squares variance would lose digits.</summary>
    private static Inputs NewInputs(Random rng, int n, int c, int hw)
    {
        float[] x = Numerics.Uniform(rng, n * c * hw);
        for (int i = 0; i < x.Length; i++) x[i] += 3f + i / hw % c;
        return new Inputs(x, Numerics.Uniform(rng, c, 0.5f, 1.5f), Numerics.Uniform(rng, c),
            Numerics.Uniform(rng, c), Numerics.Uniform(rng, c, 0.5f, 2f));
    }

    [Theory]
    [InlineData(3, 5, 7)]
    [InlineData(2, 3, 1)]
    [InlineData(1, 2, 9)]
    [InlineData(5, 3, 61)]   // several parts per channel on the CPU plan, last one shorter
    [InlineData(4, 2, 64)]
    public void ForwardTrain_matches_reference(int n, int c, int hw) => WideGroupDevice.Both(dev =>
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

        BatchNorm2d.ForwardTrain(dev, x.View, gamma.View, beta.View, y.View, saveMean.View, saveInvStd.View,
            runningMean.View, runningVar.View, n, c, hw, momentum: 0.1f, eps: 1e-5f);

        var r = BatchNorm2d.Reference.ForwardTrain(Numerics.ToDouble(a.X), Numerics.ToDouble(a.Gamma), Numerics.ToDouble(a.Beta),
            Numerics.ToDouble(a.RunningMean), Numerics.ToDouble(a.RunningVar), n, c, hw, momentum: 0.1, eps: 1e-5);
        BatchNormAsserts.TrainForward(r, a.X, a.Gamma, a.Beta, dev.Download<float>(y.View), dev.Download<float>(saveMean.View),
            dev.Download<float>(saveInvStd.View), n, c, hw, y => y, "bn", seed);
        Numerics.AssertClose(r.RunningMean, dev.Download<float>(runningMean.View), what: "bn runningMean", seed: seed);
        Numerics.AssertClose(r.RunningVar, dev.Download<float>(runningVar.View), what: "bn runningVar", seed: seed);
    });

    /// <summary>Values worked out by hand: x = 1, 2 (n=0) and 3, 4 (n=1); mean 2.5, biased var 1.25, unbiased 5/3.</summary>
    [Fact]
    public void ForwardTrain_normalises_with_biased_and_tracks_unbiased_variance() => WideGroupDevice.Both(dev =>
    {
        using var x = dev.Upload<float>([1f, 2f, 3f, 4f]);
        using var gamma = dev.Upload<float>([2f]);
        using var beta = dev.Upload<float>([0.5f]);
        using var runningMean = dev.Upload<float>([1f]);
        using var runningVar = dev.Upload<float>([1f]);
        using var y = Numerics.Poisoned(dev, 4);
        using var saveMean = Numerics.Poisoned(dev, 1);
        using var saveInvStd = Numerics.Poisoned(dev, 1);

        BatchNorm2d.ForwardTrain(dev, x.View, gamma.View, beta.View, y.View, saveMean.View, saveInvStd.View,
            runningMean.View, runningVar.View, n: 2, c: 1, hw: 2, momentum: 0.25f, eps: 1e-5f);

        double invStd = 1 / Math.Sqrt(1.25 + 1e-5);
        Numerics.AssertClose([2.5], dev.Download<float>(saveMean.View), what: "mean");
        Numerics.AssertClose([invStd], dev.Download<float>(saveInvStd.View), what: "invStd");
        Numerics.AssertClose([0.75 * 1 + 0.25 * 2.5], dev.Download<float>(runningMean.View), what: "runningMean");
        Numerics.AssertClose([0.75 * 1 + 0.25 * (5.0 / 3)], dev.Download<float>(runningVar.View), what: "runningVar");
        double[] expected = [-1.5, -0.5, 0.5, 1.5];
        for (int i = 0; i < 4; i++) expected[i] = expected[i] * invStd * 2 + 0.5;
        Numerics.AssertClose(expected, dev.Download<float>(y.View), what: "y");
    });

    [Theory]
    [InlineData(3, 5, 7, false)]
    [InlineData(2, 3, 1, false)]
    [InlineData(1, 1, 1, true)]
    [InlineData(2, 4, 9, true)]
    public void ForwardEval_matches_reference(int n, int c, int hw, bool inPlace) => WideGroupDevice.Both(dev =>
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

        BatchNorm2d.ForwardEval(dev, x.View, gamma.View, beta.View, runningMean.View, runningVar.View, y, n, c, hw);

        var expected = BatchNorm2d.Reference.ForwardEval(Numerics.ToDouble(a.X), Numerics.ToDouble(a.Gamma), Numerics.ToDouble(a.Beta),
            Numerics.ToDouble(a.RunningMean), Numerics.ToDouble(a.RunningVar), n, c, hw);
        Numerics.AssertClose(expected, dev.Download<float>(y), what: "bn eval y", seed: seed);
    });

    [Theory]
    [InlineData(3, 5, 7)]
    [InlineData(4, 3, 1)]
    [InlineData(5, 3, 61)]
    [InlineData(2, 2, 33)]
    public void Backward_matches_reference(int n, int c, int hw) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        float[] dyHost = Numerics.Uniform(rng, a.X.Length);
        var fwd = BatchNorm2d.Reference.ForwardTrain(Numerics.ToDouble(a.X), Numerics.ToDouble(a.Gamma), Numerics.ToDouble(a.Beta),
            Numerics.ToDouble(a.RunningMean), Numerics.ToDouble(a.RunningVar), n, c, hw);
        float[] meanHost = Array.ConvertAll(fwd.SaveMean, v => (float)v);
        float[] invStdHost = Array.ConvertAll(fwd.SaveInvStd, v => (float)v);

        using var x = dev.Upload<float>(a.X);
        using var dy = dev.Upload<float>(dyHost);
        using var gamma = dev.Upload<float>(a.Gamma);
        using var saveMean = dev.Upload<float>(meanHost);
        using var saveInvStd = dev.Upload<float>(invStdHost);
        using var dx = Numerics.Poisoned(dev, a.X.Length);
        using var dgamma = Numerics.Poisoned(dev, c);
        using var dbeta = Numerics.Poisoned(dev, c);

        BatchNorm2d.Backward(dev, x.View, dy.View, gamma.View, saveMean.View, saveInvStd.View, dx.View, dgamma.View, dbeta.View, n, c, hw);

        var r = BatchNorm2d.Reference.Backward(Numerics.ToDouble(a.X), Numerics.ToDouble(dyHost), Numerics.ToDouble(a.Gamma),
            Numerics.ToDouble(meanHost), Numerics.ToDouble(invStdHost), n, c, hw);
        // dgamma and dbeta are sums of m terms of size ~1 that can cancel to near zero: absolute slack grows with m.
        double sumAtol = 1e-5 + 1e-7 * n * hw;
        Numerics.AssertClose(r.Dbeta, dev.Download<float>(dbeta.View), atol: sumAtol, what: "bn dbeta", seed: seed);
        Numerics.AssertClose(r.Dgamma, dev.Download<float>(dgamma.View), atol: sumAtol, what: "bn dgamma", seed: seed);
        Numerics.AssertClose(r.Dx, dev.Download<float>(dx.View), what: "bn dx", seed: seed);
    });

    [Theory]
    [InlineData(2, 3, 5)]
    [InlineData(4, 2, 1)]
    public void Backward_reference_matches_finite_differences(int n, int c, int hw)
    {
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        double[] x = Numerics.ToDouble(a.X), gamma = Numerics.ToDouble(a.Gamma), beta = Numerics.ToDouble(a.Beta);
        double[] rm = Numerics.ToDouble(a.RunningMean), rv = Numerics.ToDouble(a.RunningVar);
        double[] g = Numerics.ToDouble(Numerics.Uniform(rng, x.Length));

        var fwd = BatchNorm2d.Reference.ForwardTrain(x, gamma, beta, rm, rv, n, c, hw);
        var grads = BatchNorm2d.Reference.Backward(x, g, gamma, fwd.SaveMean, fwd.SaveInvStd, n, c, hw);

        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, BatchNorm2d.Reference.ForwardTrain(v, gamma, beta, rm, rv, n, c, hw).Y),
            x, grads.Dx, rng, samples: 20, what: $"bn dx (seed {seed})");
        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, BatchNorm2d.Reference.ForwardTrain(x, v, beta, rm, rv, n, c, hw).Y),
            gamma, grads.Dgamma, rng, what: $"bn dgamma (seed {seed})");
        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, BatchNorm2d.Reference.ForwardTrain(x, gamma, v, rm, rv, n, c, hw).Y),
            beta, grads.Dbeta, rng, what: $"bn dbeta (seed {seed})");
    }

    /// <summary>
    /// Two values per channel, computed as a float32 kernel would (mean, then the Welford update of the
    /// squared deviations, then 1/sqrt): the rounding bound covers every draw, including pairs that
    /// nearly coincide, yet rejects the unbiased variance (off by sqrt(2)) and stays near float32
    /// precision for well-separated values (a fifth of the usual rtol of 1e-4).
    /// </summary>
    [Fact]
    public void InvStdRoundingBound_covers_float32_rounding_and_rejects_a_wrong_variance()
    {
        var rng = Numerics.NewRandom(out int seed);
        const float eps = 1e-5f;
        for (int trial = 0; trial < 20000; trial++)
        {
            float x1 = 2 + 3 * (float)rng.NextDouble();
            float x2 = trial % 2 == 0 ? 2 + 3 * (float)rng.NextDouble() : x1 + (float)(rng.NextDouble() - 0.5) * 0.02f;
            float delta = x2 - x1;
            float meanF = x1 + delta / 2;
            float m2 = delta * (x2 - meanF);
            float invF = 1f / MathF.Sqrt(m2 / 2 + eps);
            double[] x = [x1, x2];
            var r = BatchNorm2d.Reference.ForwardTrain(x, [1.0], [0.0], [0.0], [1.0], n: 2, c: 1, hw: 1);
            double bound = BatchNorm2d.Reference.InvStdRoundingBound(x, r.SaveInvStd, n: 2, c: 1, hw: 1)[0];
            Assert.True(Math.Abs(invF - r.SaveInvStd[0]) <= bound, $"x = {x1:R}, {x2:R}: float32 1/std {invF:R}, exact {r.SaveInvStd[0]:R}, bound {bound:R} (seed {seed})");
            double d = (x1 - (double)x2) / 2;
            if (d * d > 10 * eps)
            {
                double unbiased = 1 / Math.Sqrt(2 * d * d + eps);
                Assert.True(Math.Abs(unbiased - r.SaveInvStd[0]) > bound, $"x = {x1:R}, {x2:R}: the bound {bound:R} accepts the unbiased variance (seed {seed})");
            }
            if (Math.Abs(d) > 0.5) Assert.True(bound < 2e-5 * r.SaveInvStd[0], $"x = {x1:R}, {x2:R}: bound {bound:R} is loose for well-separated values (seed {seed})");
        }
    }

    [Fact]
    public void Launchers_reject_bad_arguments() => TestDevice.Use(dev =>
    {
        const int n = 2, c = 3, hw = 4;
        using var x = dev.Allocate<float>(n * c * hw);
        using var y = dev.Allocate<float>(n * c * hw);
        using var shortY = dev.Allocate<float>(n * c * hw - 1);
        using var ch = dev.Allocate<float>(c);
        using var shortCh = dev.Allocate<float>(c - 1);
        var v = ch.View;

        var e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardTrain(dev, x.View, v, v, shortY.View, v, v, v, v, n, c, hw));
        Assert.Contains("BatchNorm2d.ForwardTrain", e.Message);
        Assert.Contains("'y'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardTrain(dev, x.View, shortCh.View, v, y.View, v, v, v, v, n, c, hw));
        Assert.Contains("'gamma'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardTrain(dev, x.View, v, v, y.View, v, v, v, v, 1, c, 1));
        Assert.Contains("more than one value per channel", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardTrain(dev, x.View, v, v, x.View, v, v, v, v, n, c, hw));
        Assert.Contains("overlaps", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardEval(dev, x.View, v, v, v, shortCh.View, y.View, n, c, hw));
        Assert.Contains("'runningVar'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.Backward(dev, x.View, y.View, v, v, v, y.View, v, v, n, c, hw));
        Assert.Contains("'dx' overlaps 'dy'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.Backward(dev, x.View, y.View, v, v, v, shortY.View, v, v, n, c, hw));
        Assert.Contains("'dx'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardEval(dev, x.View, v, v, v, v, y.View, n, 0, hw));
        Assert.Contains("positive", e.Message);
    });
}
