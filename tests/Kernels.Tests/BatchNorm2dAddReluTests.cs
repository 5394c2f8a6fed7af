using Engine.Kernels;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class BatchNorm2dAddReluTests
{
    private sealed record Inputs(float[] X, float[] Identity, float[] Gamma, float[] Beta, float[] RunningMean, float[] RunningVar);

    /// <summary>
    /// Channels sit off zero (mean about 3); beta and identity in [-1, 1], so bn(x) + identity takes both
    /// signs and a good part of the output is clipped by the ReLU.
    /// </summary>
    private static Inputs NewInputs(Random rng, int n, int c, int hw)
    {
        float[] x = Numerics.Uniform(rng, n * c * hw);
        for (int i = 0; i < x.Length; i++) x[i] += 3f + i / hw % c;
        return new Inputs(x, Numerics.Uniform(rng, x.Length), Numerics.Uniform(rng, c, 0.5f, 1.5f), Numerics.Uniform(rng, c),
            Numerics.Uniform(rng, c, 2.5f, 4.5f), Numerics.Uniform(rng, c, 0.5f, 2f));
    }

    private static double[] D(float[] a) => Numerics.ToDouble(a);

    [Theory]
    [InlineData(3, 5, 7)]
    [InlineData(2, 3, 1)]
    [InlineData(1, 2, 9)]
    [InlineData(5, 3, 61)]   // several parts per channel on the CPU plan, last one shorter
    [InlineData(4, 2, 64)]
    public void ForwardTrainAddRelu_matches_reference(int n, int c, int hw) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        using var x = dev.Upload<float>(a.X);
        using var identity = dev.Upload<float>(a.Identity);
        using var gamma = dev.Upload<float>(a.Gamma);
        using var beta = dev.Upload<float>(a.Beta);
        using var runningMean = dev.Upload<float>(a.RunningMean);
        using var runningVar = dev.Upload<float>(a.RunningVar);
        using var y = Numerics.Poisoned(dev, a.X.Length);
        using var saveMean = Numerics.Poisoned(dev, c);
        using var saveInvStd = Numerics.Poisoned(dev, c);

        BatchNorm2d.ForwardTrainAddRelu(dev, x.View, identity.View, gamma.View, beta.View, y.View, saveMean.View, saveInvStd.View,
            runningMean.View, runningVar.View, n, c, hw, momentum: 0.1f, eps: 1e-5f);

        var r = BatchNorm2d.Reference.ForwardTrainAddRelu(D(a.X), D(a.Identity), D(a.Gamma), D(a.Beta), D(a.RunningMean), D(a.RunningVar),
            n, c, hw, momentum: 0.1, eps: 1e-5);
        float[] yHost = dev.Download<float>(y.View);
        BatchNormAsserts.TrainForward(r, a.X, a.Gamma, a.Beta, yHost, dev.Download<float>(saveMean.View), dev.Download<float>(saveInvStd.View),
            n, c, hw, z => Relu.Reference.Forward(Elementwise.Reference.Add(z, D(a.Identity))), "bn+add+relu", seed);
        Assert.All(yHost, v => Assert.True(v >= 0f));
        Numerics.AssertClose(r.RunningMean, dev.Download<float>(runningMean.View), what: "bn+add+relu runningMean", seed: seed);
        Numerics.AssertClose(r.RunningVar, dev.Download<float>(runningVar.View), what: "bn+add+relu runningVar", seed: seed);
        Assert.True(dev.Download<float>(identity.View).SequenceEqual(a.Identity), "identity must be left as it was");
    });

    /// <summary>The fused output equals the unfused kernels' bn, add, relu, bit for bit: the same float operations.</summary>
    [Fact]
    public void ForwardTrainAddRelu_equals_unfused_kernels_exactly() => WideGroupDevice.Both(dev =>
    {
        const int n = 3, c = 4, hw = 10;
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        using var x = dev.Upload<float>(a.X);
        using var identity = dev.Upload<float>(a.Identity);
        using var gamma = dev.Upload<float>(a.Gamma);
        using var beta = dev.Upload<float>(a.Beta);
        using var rm = dev.Upload<float>(a.RunningMean);
        using var rv = dev.Upload<float>(a.RunningVar);
        using var stats = dev.Allocate<float>(2 * c);
        using var fused = Numerics.Poisoned(dev, a.X.Length);
        using var unfused = Numerics.Poisoned(dev, a.X.Length);

        BatchNorm2d.ForwardTrainAddRelu(dev, x.View, identity.View, gamma.View, beta.View, fused.View, stats.View.SubView(0, c), stats.View.SubView(c, c),
            rm.View, rv.View, n, c, hw);
        BatchNorm2d.ForwardTrain(dev, x.View, gamma.View, beta.View, unfused.View, stats.View.SubView(0, c), stats.View.SubView(c, c), rm.View, rv.View, n, c, hw);
        Elementwise.Add(dev, unfused.View, identity.View, unfused.View);
        Relu.Forward(dev, unfused.View, unfused.View);

        float[] f = dev.Download<float>(fused.View);
        Assert.True(dev.Download<float>(unfused.View).SequenceEqual(f), $"fused and unfused differ (seed {seed})");
        Assert.Contains(f, v => v == 0f);
        Assert.Contains(f, v => v > 0f);
    });

    public enum Alias { None, X, Identity }

    [Theory]
    [InlineData(3, 5, 7, Alias.None)]
    [InlineData(2, 3, 1, Alias.None)]
    [InlineData(1, 1, 1, Alias.X)]
    [InlineData(2, 4, 9, Alias.X)]
    [InlineData(3, 2, 5, Alias.Identity)]
    public void ForwardEvalAddRelu_matches_reference(int n, int c, int hw, Alias alias) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        using var x = dev.Upload<float>(a.X);
        using var identity = dev.Upload<float>(a.Identity);
        using var gamma = dev.Upload<float>(a.Gamma);
        using var beta = dev.Upload<float>(a.Beta);
        using var runningMean = dev.Upload<float>(a.RunningMean);
        using var runningVar = dev.Upload<float>(a.RunningVar);
        using var yBuffer = Numerics.Poisoned(dev, a.X.Length);
        var y = alias switch { Alias.X => x.View, Alias.Identity => identity.View, _ => yBuffer.View };

        BatchNorm2d.ForwardEvalAddRelu(dev, x.View, identity.View, gamma.View, beta.View, runningMean.View, runningVar.View, y, n, c, hw);

        var expected = BatchNorm2d.Reference.ForwardEvalAddRelu(D(a.X), D(a.Identity), D(a.Gamma), D(a.Beta), D(a.RunningMean), D(a.RunningVar), n, c, hw);
        Numerics.AssertClose(expected, dev.Download<float>(y), what: $"bn+add+relu eval y ({alias})", seed: seed);
    });

    [Theory]
    [InlineData(3, 5, 7, false)]
    [InlineData(4, 3, 1, false)]
    [InlineData(5, 3, 61, false)]
    [InlineData(2, 2, 33, true)]
    [InlineData(3, 4, 5, true)]
    public void BackwardAddRelu_matches_reference(int n, int c, int hw, bool inPlace) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        float[] dyHost = Numerics.Uniform(rng, a.X.Length);
        var fwd = BatchNorm2d.Reference.ForwardTrainAddRelu(D(a.X), D(a.Identity), D(a.Gamma), D(a.Beta), D(a.RunningMean), D(a.RunningVar), n, c, hw);
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
        using var dIdentityBuffer = Numerics.Poisoned(dev, a.X.Length);
        using var dgamma = Numerics.Poisoned(dev, c);
        using var dbeta = Numerics.Poisoned(dev, c);
        var dIdentity = inPlace ? dy.View : dIdentityBuffer.View;

        BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, gamma.View, saveMean.View, saveInvStd.View, dx.View, dIdentity,
            dgamma.View, dbeta.View, n, c, hw);

        var r = BatchNorm2d.Reference.BackwardAddRelu(D(a.X), D(yHost), D(dyHost), D(a.Gamma), D(meanHost), D(invStdHost), n, c, hw);
        // dgamma and dbeta are sums of m terms of size ~1 that can cancel to near zero: absolute slack grows with m.
        double sumAtol = 1e-5 + 1e-7 * n * hw;
        Numerics.AssertClose(r.Dbeta, dev.Download<float>(dbeta.View), atol: sumAtol, what: "bn+add+relu dbeta", seed: seed);
        Numerics.AssertClose(r.Dgamma, dev.Download<float>(dgamma.View), atol: sumAtol, what: "bn+add+relu dgamma", seed: seed);
        Numerics.AssertClose(r.Dx, dev.Download<float>(dx.View), what: "bn+add+relu dx", seed: seed);
        float[] di = dev.Download<float>(dIdentity);
        Numerics.AssertClose(r.Didentity, di, rtol: 0, atol: 0, what: "bn+add+relu dIdentity", seed: seed); // a select of dy: exact
        if (!inPlace) Assert.True(dev.Download<float>(dy.View).SequenceEqual(dyHost), "dy must be left as it was");
    });

    /// <summary>
    /// Finite differences of f = dot(g, relu(bn(x) + identity)) against the fused backward reference, for
    /// x, identity, gamma and beta. Inputs are drawn so that no bn(x) + identity sits within 1e-3 of the
    /// kink, where a central difference would straddle it.
    /// </summary>
    [Theory]
    [InlineData(2, 3, 5)]
    [InlineData(4, 2, 1)]
    public void BackwardAddRelu_reference_matches_finite_differences(int n, int c, int hw)
    {
        var rng = Numerics.NewRandom(out int seed);
        double[] x, id, gamma, beta, rm, rv, sum;
        BatchNorm2d.Reference.TrainResult fwd;
        do
        {
            var a = NewInputs(rng, n, c, hw);
            x = D(a.X); id = D(a.Identity); gamma = D(a.Gamma); beta = D(a.Beta); rm = D(a.RunningMean); rv = D(a.RunningVar);
            fwd = BatchNorm2d.Reference.ForwardTrain(x, gamma, beta, rm, rv, n, c, hw);
            sum = Elementwise.Reference.Add(fwd.Y, id);
        } while (sum.Any(v => Math.Abs(v) < 1e-3) || !sum.Any(v => v < 0) || !sum.Any(v => v > 0));
        double[] g = D(Numerics.Uniform(rng, x.Length));
        double[] y = Relu.Reference.Forward(sum);

        var grads = BatchNorm2d.Reference.BackwardAddRelu(x, y, g, gamma, fwd.SaveMean, fwd.SaveInvStd, n, c, hw);

        double F(double[] xv, double[] iv, double[] gv, double[] bv)
            => Numerics.Dot(g, BatchNorm2d.Reference.ForwardTrainAddRelu(xv, iv, gv, bv, rm, rv, n, c, hw).Y);
        Numerics.AssertFiniteDifference(v => F(v, id, gamma, beta), x, grads.Dx, rng, samples: 20, what: $"bn+add+relu dx (seed {seed})");
        Numerics.AssertFiniteDifference(v => F(x, v, gamma, beta), id, grads.Didentity, rng, samples: 20, what: $"bn+add+relu dIdentity (seed {seed})");
        Numerics.AssertFiniteDifference(v => F(x, id, v, beta), gamma, grads.Dgamma, rng, what: $"bn+add+relu dgamma (seed {seed})");
        Numerics.AssertFiniteDifference(v => F(x, id, gamma, v), beta, grads.Dbeta, rng, what: $"bn+add+relu dbeta (seed {seed})");
    }

    [Fact]
    public void Launchers_reject_bad_arguments() => TestDevice.Use(dev =>
    {
        const int n = 2, c = 3, hw = 4, len = n * c * hw;
        using var x = dev.Allocate<float>(len);
        using var id = dev.Allocate<float>(len);
        using var y = dev.Allocate<float>(len);
        using var dy = dev.Allocate<float>(len);
        using var dx = dev.Allocate<float>(len);
        using var di = dev.Allocate<float>(len);
        using var two = dev.Allocate<float>(2 * len);
        using var shortV = dev.Allocate<float>(len - 1);
        using var ch = dev.Allocate<float>(c);
        using var shortCh = dev.Allocate<float>(c - 1);
        var v = ch.View;
        var shifted = two.View.SubView(1, len);

        void Throws(Action launch, params string[] parts)
        {
            var e = Assert.Throws<ArgumentException>(launch);
            foreach (string p in parts) Assert.Contains(p, e.Message);
        }

        Throws(() => BatchNorm2d.ForwardTrainAddRelu(dev, x.View, shortV.View, v, v, y.View, v, v, v, v, n, c, hw), "BatchNorm2d.ForwardTrainAddRelu", "'identity'");
        Throws(() => BatchNorm2d.ForwardTrainAddRelu(dev, x.View, id.View, v, v, x.View, v, v, v, v, n, c, hw), "'y' overlaps 'x'");
        Throws(() => BatchNorm2d.ForwardTrainAddRelu(dev, x.View, id.View, v, v, id.View, v, v, v, v, n, c, hw), "'y' overlaps 'identity'");
        Throws(() => BatchNorm2d.ForwardTrainAddRelu(dev, x.View, id.View, v, shortCh.View, y.View, v, v, v, v, n, c, hw), "'beta'");
        Throws(() => BatchNorm2d.ForwardTrainAddRelu(dev, x.View, id.View, v, v, y.View, v, v, v, v, 1, c, 1), "more than one value per channel");
        Throws(() => BatchNorm2d.ForwardEvalAddRelu(dev, x.View, id.View, v, v, v, shortCh.View, y.View, n, c, hw), "BatchNorm2d.ForwardEvalAddRelu", "'runningVar'");
        Throws(() => BatchNorm2d.ForwardEvalAddRelu(dev, two.View.SubView(0, len), id.View, v, v, v, v, shifted, n, c, hw), "'y' overlaps 'x' without being the same");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, v, y.View, di.View, v, v, n, c, hw), "'dx' overlaps 'y'");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, v, dy.View, di.View, v, v, n, c, hw), "'dx' overlaps 'dy'");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, v, dx.View, dx.View, v, v, n, c, hw), "'dx' overlaps 'dIdentity'");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, v, dx.View, y.View, v, v, n, c, hw), "'dIdentity' overlaps 'y'");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, two.View.SubView(0, len), v, v, v, dx.View, shifted, v, v, n, c, hw),
            "'dIdentity' overlaps 'dy' without being the same");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, v, dx.View, shortV.View, v, v, n, c, hw), "BatchNorm2d.BackwardAddRelu", "'dIdentity'");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, shortCh.View, dx.View, di.View, v, v, n, c, hw), "'saveInvStd'");
    });
}
