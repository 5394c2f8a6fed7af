using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

/// <summary>The three training ops of batch norm: plain, fused with the ReLU after it, fused with the block tail's add and ReLU.</summary>
public enum BnOp
{
    Plain,
    Relu,
    AddRelu,
}

/// <summary>
/// Batch norm's training forward, backward and eval forward, for each of <see cref="BnOp"/>: the kernels
/// against the float64 references at shapes that are and are not multiples of the reduction plan, with
/// the outputs they may alias; the backward references against finite differences of the forward ones;
/// the fused ops against the unfused kernels, bit for bit. The ops' own files keep what only one op has
/// (hand-worked values, the rounding bound, argument checks).
/// </summary>
public class BatchNorm2dOpTests
{
    private sealed record Inputs(float[] X, float[] Identity, float[] Gamma, float[] Beta, float[] RunningMean, float[] RunningVar);

    /// <summary>The forward's inputs uploaded to a device, freed together.</summary>
    private sealed class OnDevice(Device dev, Inputs a) : IDisposable
    {
        public MemoryBuffer1D<float, Stride1D.Dense> X { get; } = dev.Upload<float>(a.X);
        public MemoryBuffer1D<float, Stride1D.Dense> Identity { get; } = dev.Upload<float>(a.Identity);
        public MemoryBuffer1D<float, Stride1D.Dense> Gamma { get; } = dev.Upload<float>(a.Gamma);
        public MemoryBuffer1D<float, Stride1D.Dense> Beta { get; } = dev.Upload<float>(a.Beta);
        public MemoryBuffer1D<float, Stride1D.Dense> RunningMean { get; } = dev.Upload<float>(a.RunningMean);
        public MemoryBuffer1D<float, Stride1D.Dense> RunningVar { get; } = dev.Upload<float>(a.RunningVar);

        public void Dispose()
        {
            foreach (var b in new[] { X, Identity, Gamma, Beta, RunningMean, RunningVar }) b.Dispose();
        }
    }

    /// <summary>
    /// Channels sit off zero (mean about 3 + channel) so a naive sum-of-squares variance would lose
    /// digits; beta[0] = 0 keeps both signs in channel 0 before a ReLU; identity in [-1, 1].
    /// </summary>
    private static Inputs NewInputs(Random rng, int n, int c, int hw)
    {
        float[] x = Numerics.Uniform(rng, n * c * hw);
        for (int i = 0; i < x.Length; i++) x[i] += 3f + i / hw % c;
        float[] beta = Numerics.Uniform(rng, c);
        beta[0] = 0f;
        return new Inputs(x, Numerics.Uniform(rng, x.Length), Numerics.Uniform(rng, c, 0.5f, 1.5f), beta,
            Numerics.Uniform(rng, c, 2.5f, 4.5f), Numerics.Uniform(rng, c, 0.5f, 2f));
    }

    private static double[] D(float[] a) => Numerics.ToDouble(a);

    private static string Name(BnOp op) => op switch { BnOp.Plain => "bn", BnOp.Relu => "bn+relu", _ => "bn+add+relu" };

    /// <summary>What follows the normalisation: nothing, ReLU, or + identity then ReLU.</summary>
    private static double[] Epilogue(BnOp op, double[] z, double[] identity) => op switch
    {
        BnOp.Plain => z,
        BnOp.Relu => Relu.Reference.Forward(z),
        _ => Relu.Reference.Forward(Elementwise.Reference.Add(z, identity)),
    };

    private static BatchNorm2d.Reference.TrainResult ReferenceForward(BnOp op, double[] x, double[] identity, double[] gamma, double[] beta,
        double[] rm, double[] rv, int n, int c, int hw) => op switch
    {
        BnOp.Plain => BatchNorm2d.Reference.ForwardTrain(x, gamma, beta, rm, rv, n, c, hw),
        BnOp.Relu => BatchNorm2d.Reference.ForwardTrainRelu(x, gamma, beta, rm, rv, n, c, hw),
        _ => BatchNorm2d.Reference.ForwardTrainAddRelu(x, identity, gamma, beta, rm, rv, n, c, hw),
    };

    /// <summary>dx, dgamma, dbeta and (add + ReLU only) d(identity), given the op's output y for the ReLU mask.</summary>
    private static (double[] Dx, double[] Dgamma, double[] Dbeta, double[]? Didentity) ReferenceBackward(BnOp op, double[] x, double[] y,
        double[] dy, double[] gamma, double[] mean, double[] invStd, int n, int c, int hw)
    {
        if (op == BnOp.AddRelu)
        {
            var a = BatchNorm2d.Reference.BackwardAddRelu(x, y, dy, gamma, mean, invStd, n, c, hw);
            return (a.Dx, a.Dgamma, a.Dbeta, a.Didentity);
        }
        var r = op == BnOp.Plain
            ? BatchNorm2d.Reference.Backward(x, dy, gamma, mean, invStd, n, c, hw)
            : BatchNorm2d.Reference.BackwardRelu(x, y, dy, gamma, mean, invStd, n, c, hw);
        return (r.Dx, r.Dgamma, r.Dbeta, null);
    }

    /// <summary>d(identity) written into dy itself, as the block's backward does (the cases give it a buffer of its own).</summary>
    public static IEnumerable<object[]> BackwardCases() => [[BnOp.AddRelu, 2, 2, 33, true], [BnOp.AddRelu, 3, 4, 5, true]];

    [Theory]
    [MemberData(nameof(BackwardCases))]
    public void Backward_with_dIdentity_in_dy_matches_reference(BnOp op, int n, int c, int hw, bool dIdentityInDy) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        float[] dyHost = Numerics.Uniform(rng, a.X.Length);
        var fwd = ReferenceForward(op, D(a.X), D(a.Identity), D(a.Gamma), D(a.Beta), D(a.RunningMean), D(a.RunningVar), n, c, hw);
        float[] yHost = Array.ConvertAll(fwd.Y, v => (float)v);
        float[] meanHost = Array.ConvertAll(fwd.SaveMean, v => (float)v);
        float[] invStdHost = Array.ConvertAll(fwd.SaveInvStd, v => (float)v);
        if (op != BnOp.Plain)
        {
            Assert.Contains(yHost, v => v == 0f);
            Assert.Contains(yHost, v => v > 0f);
        }

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
        var dIdentity = dIdentityInDy ? dy.View : dIdentityBuffer.View;

        switch (op)
        {
            case BnOp.Plain:
                BatchNorm2d.Backward(dev, x.View, dy.View, gamma.View, saveMean.View, saveInvStd.View, dx.View, dgamma.View, dbeta.View, n, c, hw);
                break;
            case BnOp.Relu:
                BatchNorm2d.BackwardRelu(dev, x.View, y.View, dy.View, gamma.View, saveMean.View, saveInvStd.View, dx.View, dgamma.View, dbeta.View, n, c, hw);
                break;
            default:
                BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, gamma.View, saveMean.View, saveInvStd.View, dx.View, dIdentity,
                    dgamma.View, dbeta.View, n, c, hw);
                break;
        }

        var r = ReferenceBackward(op, D(a.X), D(yHost), D(dyHost), D(a.Gamma), D(meanHost), D(invStdHost), n, c, hw);
        // dgamma and dbeta are sums of m terms of size ~1 that can cancel to near zero: absolute slack grows with m.
        double sumAtol = 1e-5 + 1e-7 * n * hw;
        Numerics.AssertClose(r.Dbeta, dev.Download<float>(dbeta.View), atol: sumAtol, what: $"{Name(op)} dbeta", seed: seed);
        Numerics.AssertClose(r.Dgamma, dev.Download<float>(dgamma.View), atol: sumAtol, what: $"{Name(op)} dgamma", seed: seed);
        Numerics.AssertClose(r.Dx, dev.Download<float>(dx.View), what: $"{Name(op)} dx", seed: seed);
        if (r.Didentity is not null)
        {
            Numerics.AssertClose(r.Didentity, dev.Download<float>(dIdentity), rtol: 0, atol: 0, what: "bn+add+relu dIdentity", seed: seed); // a select of dy: exact
        }
        if (!dIdentityInDy) Assert.True(dev.Download<float>(dy.View).SequenceEqual(dyHost), "dy must be left as it was");
    });

    public static IEnumerable<object[]> FiniteDifferenceCases() =>
        from op in Enum.GetValues<BnOp>()
        from s in new[] { (2, 3, 5), (4, 2, 1) }
        select new object[] { op, s.Item1, s.Item2, s.Item3 };

    /// <summary>
    /// Finite differences of f = dot(g, op(x)) against the backward reference, for x, gamma, beta (and
    /// identity). Before a ReLU, inputs are drawn so that no pre-activation sits within 1e-3 of the kink,
    /// where a central difference would straddle it, and both signs occur.
    /// </summary>
    [Theory]
    [MemberData(nameof(FiniteDifferenceCases))]
    public void Backward_reference_matches_finite_differences(BnOp op, int n, int c, int hw)
    {
        var rng = Numerics.NewRandom(out int seed);
        double[] x, id, gamma, beta, rm, rv, pre;
        BatchNorm2d.Reference.TrainResult fwd;
        do
        {
            var a = NewInputs(rng, n, c, hw);
            x = D(a.X); id = D(a.Identity); gamma = D(a.Gamma); beta = D(a.Beta); rm = D(a.RunningMean); rv = D(a.RunningVar);
            fwd = BatchNorm2d.Reference.ForwardTrain(x, gamma, beta, rm, rv, n, c, hw);
            pre = op == BnOp.AddRelu ? Elementwise.Reference.Add(fwd.Y, id) : fwd.Y;
        } while (op != BnOp.Plain && (pre.Any(v => Math.Abs(v) < 1e-3) || !pre.Any(v => v < 0) || !pre.Any(v => v > 0)));
        double[] g = D(Numerics.Uniform(rng, x.Length));
        double[] y = Epilogue(op, fwd.Y, id);

        var grads = ReferenceBackward(op, x, y, g, gamma, fwd.SaveMean, fwd.SaveInvStd, n, c, hw);

        double F(double[] xv, double[] iv, double[] gv, double[] bv) => Numerics.Dot(g, ReferenceForward(op, xv, iv, gv, bv, rm, rv, n, c, hw).Y);
        string what = $"{Name(op)} (seed {seed})";
        Numerics.AssertFiniteDifference(v => F(v, id, gamma, beta), x, grads.Dx, rng, samples: 20, what: $"dx of {what}");
        Numerics.AssertFiniteDifference(v => F(x, id, v, beta), gamma, grads.Dgamma, rng, what: $"dgamma of {what}");
        Numerics.AssertFiniteDifference(v => F(x, id, gamma, v), beta, grads.Dbeta, rng, what: $"dbeta of {what}");
        if (grads.Didentity is not null)
        {
            Numerics.AssertFiniteDifference(v => F(x, v, gamma, beta), id, grads.Didentity, rng, samples: 20, what: $"dIdentity of {what}");
        }
    }

    /// <summary>Which operand the eval forward writes its output into.</summary>
    public enum Alias { None, X, Identity }

    public static IEnumerable<object[]> EvalCases() =>
        (from op in Enum.GetValues<BnOp>()
         from s in new[] { (3, 5, 7, Alias.None), (2, 3, 1, Alias.None), (1, 1, 1, Alias.X), (2, 4, 9, Alias.X) }
         select new object[] { op, s.Item1, s.Item2, s.Item3, s.Item4 })
        .Concat([[BnOp.AddRelu, 3, 2, 5, Alias.Identity]]);

    [Theory]
    [MemberData(nameof(EvalCases))]
    public void ForwardEval_matches_reference(BnOp op, int n, int c, int hw, Alias alias) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        using var d = new OnDevice(dev, a);
        var (x, identity, gamma, beta, runningMean, runningVar) = (d.X, d.Identity, d.Gamma, d.Beta, d.RunningMean, d.RunningVar);
        using var yBuffer = Numerics.Poisoned(dev, a.X.Length);
        var y = alias switch { Alias.X => x.View, Alias.Identity => identity.View, _ => yBuffer.View };

        switch (op)
        {
            case BnOp.Plain:
                BatchNorm2d.ForwardEval(dev, x.View, gamma.View, beta.View, runningMean.View, runningVar.View, y, n, c, hw);
                break;
            case BnOp.Relu:
                BatchNorm2d.ForwardEvalRelu(dev, x.View, gamma.View, beta.View, runningMean.View, runningVar.View, y, n, c, hw);
                break;
            default:
                BatchNorm2d.ForwardEvalAddRelu(dev, x.View, identity.View, gamma.View, beta.View, runningMean.View, runningVar.View, y, n, c, hw);
                break;
        }

        double[] z = BatchNorm2d.Reference.ForwardEval(D(a.X), D(a.Gamma), D(a.Beta), D(a.RunningMean), D(a.RunningVar), n, c, hw);
        Numerics.AssertClose(Epilogue(op, z, D(a.Identity)), dev.Download<float>(y), what: $"{Name(op)} eval y ({alias})", seed: seed);
    });

    /// <summary>A fused training forward equals the unfused kernels (bn, then add, then relu) bit for bit: the same float operations.</summary>
    [Theory]
    [InlineData(BnOp.Relu)]
    [InlineData(BnOp.AddRelu)]
    public void Fused_forward_equals_the_unfused_kernels_exactly(BnOp op) => WideGroupDevice.Both(dev =>
    {
        const int n = 3, c = 4, hw = 10;
        var rng = Numerics.NewRandom(out int seed);
        var a = NewInputs(rng, n, c, hw);
        using var d = new OnDevice(dev, a);
        var (x, identity, gamma, beta, rm, rv) = (d.X, d.Identity, d.Gamma, d.Beta, d.RunningMean, d.RunningVar);
        using var stats = dev.Allocate<float>(2 * c);
        using var fused = Numerics.Poisoned(dev, a.X.Length);
        using var unfused = Numerics.Poisoned(dev, a.X.Length);
        var mean = stats.View.SubView(0, c);
        var invStd = stats.View.SubView(c, c);

        if (op == BnOp.Relu) BatchNorm2d.ForwardTrainRelu(dev, x.View, gamma.View, beta.View, fused.View, mean, invStd, rm.View, rv.View, n, c, hw);
        else BatchNorm2d.ForwardTrainAddRelu(dev, x.View, identity.View, gamma.View, beta.View, fused.View, mean, invStd, rm.View, rv.View, n, c, hw);
        BatchNorm2d.ForwardTrain(dev, x.View, gamma.View, beta.View, unfused.View, mean, invStd, rm.View, rv.View, n, c, hw);
        if (op == BnOp.AddRelu) Elementwise.Add(dev, unfused.View, identity.View, unfused.View);
        Relu.Forward(dev, unfused.View, unfused.View);

        float[] f = dev.Download<float>(fused.View);
        Assert.True(dev.Download<float>(unfused.View).SequenceEqual(f), $"{Name(op)}: fused and unfused differ (seed {seed})");
        Assert.Contains(f, v => v == 0f);
        Assert.Contains(f, v => v > 0f);
    });
}
