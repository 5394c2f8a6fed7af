using System.Diagnostics;
using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Checks;

/// <summary>One kernel run against its float64 reference on some device.</summary>
/// <param name="Failure">Set when the check threw (a kernel the driver refused, say) instead of producing an output.</param>
/// <param name="Skipped">Set when the device cannot run the kernel at all: why it was not run (neither passed nor failed).</param>
public sealed record KernelCheckResult(string Kernel, string Shape, double MaxError, double Tolerance, double Milliseconds, string? Failure = null, string? Skipped = null)
{
    public bool Passed => Skipped is null && MaxError <= Tolerance && double.IsFinite(MaxError);
    public bool Failed => Skipped is null && !Passed;
}

/// <summary>
/// Every kernel on a chosen device (CUDA on a GPU host) against its float64 reference, at a few
/// shapes including ones that are not multiples of the tiles, with outputs poisoned first and fresh
/// random inputs. This is the GPU half of the kernel tests, which run on the CPU accelerator in CI.
/// The error is max |actual - expected| / (atol + rtol |expected|): at most 1 passes.
/// </summary>
public sealed class KernelChecks(Device dev, Random rng)
{
    private readonly List<KernelCheckResult> _results = new();
    private string _label = "";

    public IReadOnlyList<KernelCheckResult> Results => _results;

    public static IReadOnlyList<KernelCheckResult> RunAll(Device dev, int seed, bool large)
    {
        var c = new KernelChecks(dev, new Random(seed));
        var convs = new List<Conv2dShape>
        {
            new(2, 3, 7, 7, 5, 3, 3, 1, 1), new(3, 5, 9, 8, 6, 1, 1, 2, 0), new(2, 3, 13, 13, 4, 7, 7, 2, 3), new(1, 7, 5, 6, 9, 3, 3, 2, 1),
        };
        if (large)
        {
            convs.Add(new(32, 64, 8, 8, 64, 3, 3, 1, 1));
            convs.Add(new(32, 128, 4, 4, 256, 3, 3, 2, 1));
            convs.Add(new(16, 3, 32, 32, 64, 7, 7, 2, 3));
        }
        foreach (Conv2dShape s in convs) c.Guard("conv2d", s.ToString(), () => c.Conv(s));
        if (dev.IsCuda)
        {
            // The TF32 tensor-core forward (not the engine's default path): first against its own TF32
            // reference at fp32 tolerance (a wrong fragment layout gives errors of order 1), then against
            // the exact reference at the TF32 tolerance. A simulated GPU lists it as skipped, with the reason.
            foreach (Conv2dShape s in convs)
            {
                if (Conv2dTf32.CannotRunOn(dev) is { } why) c._results.Add(new KernelCheckResult("conv2d_fwd_tf32", s.ToString(), 0, 1, 0, Skipped: why));
                else c.Guard("conv2d_fwd_tf32", s.ToString(), () => c.ConvTf32(s));
            }
        }
        foreach (var (n, ch, hw) in new[] { (3, 5, 7), (2, 3, 1), (5, 3, 61), (3, 5, 8) }.Concat(large ? new[] { (64, 64, 64) } : Array.Empty<(int, int, int)>()))
        {
            string shape = $"n={n} c={ch} hw={hw}";
            c.Guard("batchnorm", shape, () => c.BatchNorm(n, ch, hw));
            c.Guard("batchnorm_fused", shape, () => c.BatchNormFused(n, ch, hw));
        }
        c.Guard("relu", "n=1000", () => c.Relu(1000));
        c.Guard("add", "n=1001", () => c.Add(1001));
        foreach (var s in new[] { new Pool2dShape(2, 3, 7, 7, 3, 2, 1), new Pool2dShape(1, 2, 8, 8, 3, 2, 1), new Pool2dShape(2, 2, 1, 1, 3, 2, 1) })
        {
            c.Guard("maxpool", s.ToString(), () => c.MaxPool(s));
        }
        c.Guard("avgpool", "nc=6 hw=49", () => c.AvgPool(6, 49));
        foreach (var (n, i, o) in new[] { (5, 7, 3), (9, 13, 10) }.Concat(large ? new[] { (512, 512, 10) } : Array.Empty<(int, int, int)>()))
        {
            c.Guard("linear", $"n={n} in={i} out={o}", () => c.Linear(n, i, o));
        }
        foreach (var (n, k) in new[] { (5, 10), (37, 3) }.Concat(large ? new[] { (512, 10) } : Array.Empty<(int, int)>()))
        {
            c.Guard("softmax_xent", $"n={n} classes={k}", () => c.Loss(n, k));
        }
        c.Guard("sgd_step", "n=1003", () => c.Sgd(1003));
        c.Guard("augment", "n=3 3x32x32", () => c.Augment(3, 3, 32, 32, 4));
        // The ops above take their float4 kernels where the views allow (fresh buffers, hw % 4 == 0 for
        // batch norm); once more with the scalar kernels, which the engine falls back to elsewhere.
        c._label = " (scalar)";
        using (Float4Dispatch.Suspend())
        {
            c.Guard("batchnorm", "n=3 c=5 hw=8", () => c.BatchNorm(3, 5, 8));
            c.Guard("batchnorm_fused", "n=3 c=5 hw=8", () => c.BatchNormFused(3, 5, 8));
            c.Guard("relu", "n=1000", () => c.Relu(1000));
            c.Guard("add", "n=1001", () => c.Add(1001));
            c.Guard("sgd_step", "n=1003", () => c.Sgd(1003));
        }
        return c.Results;
    }

    /// <summary>
    /// Runs one op's check; if it throws (a kernel the driver refuses on a first GPU run, say), records a
    /// failed row with the exception instead, so the checks after it still run.
    /// </summary>
    public void Guard(string op, string shape, Action check)
    {
        try
        {
            check();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _results.Add(new KernelCheckResult(op + _label, shape, double.PositiveInfinity, 1.0, 0, $"{e.GetType().Name}: {e.Message.Split('\n')[0]}"));
        }
    }

    private float[] Rand(int n, float lo = -1, float hi = 1)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = lo + (hi - lo) * (float)rng.NextDouble();
        return a;
    }

    private static double[] D(float[] a) => Array.ConvertAll(a, v => (double)v);

    private MemoryBuffer1D<float, Stride1D.Dense> Poisoned(long n)
    {
        var b = dev.Allocate<float>(Math.Max(1, n));
        Elementwise.Fill(dev, b.View, float.NaN);
        return b;
    }

    private double Time(Action launch)
    {
        dev.Synchronize();
        var sw = Stopwatch.StartNew();
        launch();
        dev.Synchronize();
        return sw.Elapsed.TotalMilliseconds;
    }

    /// <param name="slack">Per element, added to atol: a rounding bound for ill-conditioned outputs.</param>
    private void Record(string kernel, string shape, double[] expected, ArrayView<float> actualView, double ms, double rtol = 1e-4, double atol = 1e-5, double[]? slack = null)
    {
        float[] actual = dev.Download(actualView);
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(actual[i] - expected[i]) / (atol + (slack?[i] ?? 0) + rtol * Math.Abs(expected[i]));
            if (!double.IsFinite(actual[i])) err = double.PositiveInfinity;
            worst = Math.Max(worst, err);
        }
        _results.Add(new KernelCheckResult(kernel + _label, shape, worst, 1.0, ms));
    }

    public void Conv(Conv2dShape s)
    {
        float[] x = Rand((int)s.InputLength), w = Rand((int)s.WeightLength), dy = Rand((int)s.OutputLength);
        using var dx_ = dev.Upload<float>(x);
        using var dw_ = dev.Upload<float>(w);
        using var ddy = dev.Upload<float>(dy);
        using var y = Poisoned(s.OutputLength);
        using var dxo = Poisoned(s.InputLength);
        using var dwo = Poisoned(s.WeightLength);
        // Sums of C*R*S (or N*OH*OW) fp32 terms: an absolute floor that grows with their count.
        double atolF = 1e-6 * s.C * s.R * s.S, atolW = 1e-6 * s.N * s.OutH * s.OutW;
        Record("conv2d_fwd", s.ToString(), Conv2d.Reference.Forward(D(x), D(w), s), y.View, Time(() => Conv2d.Forward(dev, dx_.View, dw_.View, y.View, s)), atol: Math.Max(1e-5, atolF));
        Record("conv2d_bwd_data", s.ToString(), Conv2d.Reference.BackwardData(D(dy), D(w), s), dxo.View, Time(() => Conv2d.BackwardData(dev, ddy.View, dw_.View, dxo.View, s)), atol: Math.Max(1e-5, 1e-6 * s.K * s.R * s.S));
        Record("conv2d_bwd_weight", s.ToString(), Conv2d.Reference.BackwardWeight(D(x), D(dy), s), dwo.View, Time(() => Conv2d.BackwardWeight(dev, dx_.View, ddy.View, dwo.View, s)), atol: Math.Max(1e-5, atolW));
    }

    public void ConvTf32(Conv2dShape s)
    {
        float[] x = Rand((int)s.InputLength), w = Rand((int)s.WeightLength);
        using var dX = dev.Upload<float>(x);
        using var dW = dev.Upload<float>(w);
        using var y = Poisoned(s.OutputLength);
        double ms = Time(() => Conv2dTf32.Forward(dev, dX.View, dW.View, y.View, s));
        Record("conv2d_fwd_tf32 vs tf32", s.ToString(), Conv2dTf32.Reference.Forward(D(x), D(w), s), y.View, ms, atol: Math.Max(1e-5, 1e-6 * s.C * s.R * s.S));
        var (rtol, atol) = Conv2dTf32.Tolerance(s);
        Record("conv2d_fwd_tf32 vs exact", s.ToString(), Conv2d.Reference.Forward(D(x), D(w), s), y.View, 0, rtol, atol);
    }

    public void BatchNorm(int n, int c, int hw)
    {
        int len = n * c * hw;
        float[] x = Rand(len, 2, 5), g = Rand(c, 0.5f, 1.5f), b = Rand(c), rm = Rand(c), rv = Rand(c, 0.5f, 2), dy = Rand(len);
        using var dX = dev.Upload<float>(x);
        using var dG = dev.Upload<float>(g);
        using var dB = dev.Upload<float>(b);
        using var dRm = dev.Upload<float>(rm);
        using var dRv = dev.Upload<float>(rv);
        using var dDy = dev.Upload<float>(dy);
        using var y = Poisoned(len);
        using var mean = Poisoned(c);
        using var inv = Poisoned(c);
        string shape = $"n={n} c={c} hw={hw}";
        var r = Engine.Kernels.BatchNorm2d.Reference.ForwardTrain(D(x), D(g), D(b), D(rm), D(rv), n, c, hw);
        double ms = Time(() => Engine.Kernels.BatchNorm2d.ForwardTrain(dev, dX.View, dG.View, dB.View, y.View, mean.View, inv.View, dRm.View, dRv.View, n, c, hw));
        var (meanDev, invDev) = RecordTrainForward("batchnorm", shape, r, x, g, b, y.View, mean.View, inv.View, n, c, hw, ms, epilogue: null);
        Record("batchnorm_running_var", shape, r.RunningVar, dRv.View, 0);
        using var dx = Poisoned(len);
        using var dg = Poisoned(c);
        using var db = Poisoned(c);
        var rb = Engine.Kernels.BatchNorm2d.Reference.Backward(D(x), D(dy), D(g), meanDev, invDev, n, c, hw);
        ms = Time(() => Engine.Kernels.BatchNorm2d.Backward(dev, dX.View, dDy.View, dG.View, mean.View, inv.View, dx.View, dg.View, db.View, n, c, hw));
        Record("batchnorm_bwd", shape, rb.Dx, dx.View, ms);
        Record("batchnorm_bwd_dgamma", shape, rb.Dgamma, dg.View, 0, atol: 1e-5 + 1e-7 * n * hw);
    }

    /// <summary>
    /// A training forward as <see cref="Engine.Kernels.BatchNorm2d.Reference.ExpectedFromStatistics"/> says:
    /// the saved mean, the saved 1/std within its rounding bound (large when a channel's few values nearly
    /// coincide), y against the normalisation with the device's own statistics. Returns those statistics:
    /// the backward is checked against the references applied with them, which keeps an ill-conditioned
    /// channel from failing a correct kernel while a wrong formula still fails by the size of the output.
    /// </summary>
    private (double[] Mean, double[] InvStd) RecordTrainForward(string name, string shape, Engine.Kernels.BatchNorm2d.Reference.TrainResult r,
        float[] x, float[] g, float[] b, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> invStd, int n, int c, int hw, double ms,
        Func<double[], double[]>? epilogue)
    {
        double[] meanDev = D(dev.Download(mean)), invDev = D(dev.Download(invStd));
        var e = Engine.Kernels.BatchNorm2d.Reference.ExpectedFromStatistics(r, D(x), D(g), D(b), meanDev, invDev, n, c, hw, epilogue);
        Record($"{name}_save_mean", shape, r.SaveMean, mean, 0);
        Record($"{name}_save_invstd", shape, r.SaveInvStd, invStd, 0, slack: e.InvStdSlack);
        Record($"{name}_fwd_train", shape, e.Y, y, ms);
        return (meanDev, invDev);
    }

    /// <summary>The fused BN + ReLU (bn1) and BN + add + ReLU (block tail) forward and backward against their composed references.</summary>
    public void BatchNormFused(int n, int c, int hw)
    {
        int len = n * c * hw;
        float[] x = Rand(len, 2, 5), id = Rand(len), g = Rand(c, 0.5f, 1.5f), b = Rand(c), rm = Rand(c), rv = Rand(c, 0.5f, 2), dy = Rand(len);
        using var dX = dev.Upload<float>(x);
        using var dId = dev.Upload<float>(id);
        using var dG = dev.Upload<float>(g);
        using var dB = dev.Upload<float>(b);
        using var dDy = dev.Upload<float>(dy);
        string shape = $"n={n} c={c} hw={hw}";
        foreach (bool add in new[] { false, true })
        {
            using var dRm = dev.Upload<float>(rm);
            using var dRv = dev.Upload<float>(rv);
            using var y = Poisoned(len);
            using var mean = Poisoned(c);
            using var inv = Poisoned(c);
            var r = add
                ? Engine.Kernels.BatchNorm2d.Reference.ForwardTrainAddRelu(D(x), D(id), D(g), D(b), D(rm), D(rv), n, c, hw)
                : Engine.Kernels.BatchNorm2d.Reference.ForwardTrainRelu(D(x), D(g), D(b), D(rm), D(rv), n, c, hw);
            double ms = Time(() =>
            {
                if (add) Engine.Kernels.BatchNorm2d.ForwardTrainAddRelu(dev, dX.View, dId.View, dG.View, dB.View, y.View, mean.View, inv.View, dRm.View, dRv.View, n, c, hw);
                else Engine.Kernels.BatchNorm2d.ForwardTrainRelu(dev, dX.View, dG.View, dB.View, y.View, mean.View, inv.View, dRm.View, dRv.View, n, c, hw);
            });
            string name = add ? "batchnorm_add_relu" : "batchnorm_relu";
            var (meanDev, invDev) = RecordTrainForward(name, shape, r, x, g, b, y.View, mean.View, inv.View, n, c, hw, ms,
                z => Engine.Kernels.Relu.Reference.Forward(add ? Elementwise.Reference.Add(z, D(id)) : z));
            // Backward from the device's own forward output, so the ReLU mask is the same on both sides.
            double[] yDev = D(dev.Download<float>(y.View));
            using var dx = Poisoned(len);
            using var dIdentity = Poisoned(len);
            using var dg = Poisoned(c);
            using var db = Poisoned(c);
            if (add)
            {
                var rb = Engine.Kernels.BatchNorm2d.Reference.BackwardAddRelu(D(x), yDev, D(dy), D(g), meanDev, invDev, n, c, hw);
                ms = Time(() => Engine.Kernels.BatchNorm2d.BackwardAddRelu(dev, dX.View, y.View, dDy.View, dG.View, mean.View, inv.View, dx.View, dIdentity.View, dg.View, db.View, n, c, hw));
                Record($"{name}_bwd", shape, rb.Dx, dx.View, ms);
                Record($"{name}_bwd_didentity", shape, rb.Didentity, dIdentity.View, 0);
            }
            else
            {
                var rb = Engine.Kernels.BatchNorm2d.Reference.BackwardRelu(D(x), yDev, D(dy), D(g), meanDev, invDev, n, c, hw);
                ms = Time(() => Engine.Kernels.BatchNorm2d.BackwardRelu(dev, dX.View, y.View, dDy.View, dG.View, mean.View, inv.View, dx.View, dg.View, db.View, n, c, hw));
                Record($"{name}_bwd", shape, rb.Dx, dx.View, ms);
            }
        }
    }

    public void Relu(int n)
    {
        float[] x = Rand(n), dy = Rand(n);
        using var dX = dev.Upload<float>(x);
        using var y = Poisoned(n);
        Record("relu_fwd", $"n={n}", Engine.Kernels.Relu.Reference.Forward(D(x)), y.View, Time(() => Engine.Kernels.Relu.Forward(dev, dX.View, y.View)));
        using var dDy = dev.Upload<float>(dy);
        using var dx = Poisoned(n);
        double[] yRef = Engine.Kernels.Relu.Reference.Forward(D(x));
        Record("relu_bwd", $"n={n}", Engine.Kernels.Relu.Reference.Backward(yRef, D(dy)), dx.View, Time(() => Engine.Kernels.Relu.Backward(dev, y.View, dDy.View, dx.View)));
    }

    public void Add(int n)
    {
        float[] a = Rand(n), b = Rand(n);
        using var dA = dev.Upload<float>(a);
        using var dB = dev.Upload<float>(b);
        using var y = Poisoned(n);
        Record("add_fwd", $"n={n}", Elementwise.Reference.Add(D(a), D(b)), y.View, Time(() => Elementwise.Add(dev, dA.View, dB.View, y.View)));
    }

    public void MaxPool(Pool2dShape s)
    {
        float[] x = Rand((int)s.InputLength), dy = Rand((int)s.OutputLength);
        using var dX = dev.Upload<float>(x);
        using var y = Poisoned(s.OutputLength);
        using var arg = dev.Allocate<int>(Math.Max(1, s.OutputLength));
        var (yRef, argRef) = MaxPool2d.Reference.Forward(D(x), s);
        Record("maxpool_fwd", s.ToString(), yRef, y.View, Time(() => MaxPool2d.Forward(dev, dX.View, y.View, arg.View, s)));
        using var dDy = dev.Upload<float>(dy);
        using var dx = Poisoned(s.InputLength);
        Record("maxpool_bwd", s.ToString(), MaxPool2d.Reference.Backward(D(dy), argRef, s), dx.View, Time(() => MaxPool2d.Backward(dev, dDy.View, arg.View, dx.View, s)));
    }

    public void AvgPool(int nc, int hw)
    {
        float[] x = Rand(nc * hw), dy = Rand(nc);
        using var dX = dev.Upload<float>(x);
        using var y = Poisoned(nc);
        Record("avgpool_fwd", $"nc={nc} hw={hw}", AdaptiveAvgPool.Reference.Forward(D(x), nc, hw), y.View, Time(() => AdaptiveAvgPool.Forward(dev, dX.View, y.View, nc, hw)));
        using var dDy = dev.Upload<float>(dy);
        using var dx = Poisoned(nc * hw);
        Record("avgpool_bwd", $"nc={nc} hw={hw}", AdaptiveAvgPool.Reference.Backward(D(dy), nc, hw), dx.View, Time(() => AdaptiveAvgPool.Backward(dev, dDy.View, dx.View, nc, hw)));
    }

    public void Linear(int n, int inF, int outF)
    {
        float[] x = Rand(n * inF), w = Rand(outF * inF), b = Rand(outF), dy = Rand(n * outF);
        using var dX = dev.Upload<float>(x);
        using var dW = dev.Upload<float>(w);
        using var dB = dev.Upload<float>(b);
        using var dDy = dev.Upload<float>(dy);
        using var y = Poisoned(n * outF);
        using var dx = Poisoned(n * inF);
        using var dw = Poisoned(outF * inF);
        using var db = Poisoned(outF);
        string shape = $"n={n} in={inF} out={outF}";
        double atol = Math.Max(1e-5, 1e-6 * Math.Max(n, inF));
        Record("linear_fwd", shape, Engine.Kernels.Linear.Reference.Forward(D(x), D(w), D(b), n, inF, outF), y.View, Time(() => Engine.Kernels.Linear.Forward(dev, dX.View, dW.View, dB.View, y.View, n, inF, outF)), atol: atol);
        var r = Engine.Kernels.Linear.Reference.Backward(D(x), D(w), D(dy), n, inF, outF);
        double ms = Time(() => Engine.Kernels.Linear.Backward(dev, dX.View, dW.View, dDy.View, dx.View, dw.View, db.View, n, inF, outF));
        Record("linear_bwd_dx", shape, r.Dx, dx.View, ms, atol: atol);
        Record("linear_bwd_dw", shape, r.Dw, dw.View, 0, atol: atol);
        Record("linear_bwd_db", shape, r.Db, db.View, 0, atol: atol);
    }

    public void Loss(int n, int classes)
    {
        float[] logits = Rand(n * classes, -5, 5);
        int[] labels = Enumerable.Range(0, n).Select(_ => rng.Next(classes)).ToArray();
        using var dL = dev.Upload<float>(logits);
        using var dY = dev.Upload<int>(labels);
        using var probs = Poisoned(n * classes);
        using var loss = Poisoned(1);
        using var correct = dev.Allocate<int>(1);
        using var dlogits = Poisoned(n * classes);
        var r = SoftmaxCrossEntropy.Reference.Forward(D(logits), labels, n, classes);
        string shape = $"n={n} classes={classes}";
        double ms = Time(() => SoftmaxCrossEntropy.Forward(dev, dL.View, dY.View, probs.View, loss.View, correct.View, n, classes));
        Record("softmax_xent_fwd", shape, new[] { r.Loss }, loss.View, ms);
        int gotCorrect = dev.Download<int>(correct.View)[0];
        _results.Add(new KernelCheckResult("softmax_xent_correct", shape, gotCorrect == r.Correct ? 0 : double.PositiveInfinity, 1, 0));
        Record("softmax_xent_bwd", shape, SoftmaxCrossEntropy.Reference.Backward(r.Probs, labels, n, classes, 1.0 / n), dlogits.View,
            Time(() => SoftmaxCrossEntropy.Backward(dev, probs.View, dY.View, dlogits.View, n, classes, 1f / n)));
    }

    public void Sgd(int n)
    {
        float[] p = Rand(n), g = Rand(n), buf = new float[n];
        double[] rp = D(p), rb = new double[n];
        using var dP = dev.Upload<float>(p);
        using var dG = dev.Upload<float>(g);
        using var dBuf = Poisoned(n);
        double ms = 0;
        for (int step = 0; step < 3; step++)
        {
            ms += Time(() => Engine.Kernels.Sgd.Step(dev, dP.View, dG.View, dBuf.View, 0.1f, 0.9f, 5e-4f, step == 0));
            Engine.Kernels.Sgd.Reference.Step(rp, D(g), rb, 0.1, 0.9, 5e-4, step == 0);
        }
        Record("sgd_step x3", $"n={n}", rp, dP.View, ms);
    }

    public void Augment(int n, int c, int h, int w, int pad)
    {
        byte[] images = new byte[n * c * h * w];
        rng.NextBytes(images);
        int[] crops = Enumerable.Range(0, 2 * n).Select(_ => rng.Next(2 * pad + 1)).ToArray();
        int[] flips = Enumerable.Range(0, n).Select(_ => rng.Next(2)).ToArray();
        float[] mean = { 0.4914f, 0.4822f, 0.4465f }, std = { 0.2470f, 0.2435f, 0.2616f };
        using var dI = dev.Upload<byte>(images);
        using var dC = dev.Upload<int>(crops);
        using var dF = dev.Upload<int>(flips);
        using var dM = dev.Upload<float>(mean);
        using var dS = dev.Upload<float>(std);
        using var y = Poisoned(images.Length);
        Record("augment", $"n={n} {c}x{h}x{w} pad={pad}", Engine.Kernels.Augment.Reference.Apply(images, crops, flips, D(mean), D(std), n, c, h, w, pad), y.View,
            Time(() => Engine.Kernels.Augment.Apply(dev, dI.View, dC.View, dF.View, y.View, dM.View, dS.View, n, c, h, w, pad)));
    }
}
