using Engine.Kernels;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class BatchNorm2dTests
{
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
