using Engine.Kernels;
using Engine.Kernels.Cases;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Checks;

/// <summary>One kernel run against its float64 reference on some device.</summary>
/// <param name="Failure">Set when the check threw (a kernel the driver refused, say) instead of producing an output.</param>
/// <param name="Skipped">Set when the device cannot run the kernel at all: why it was not run (neither passed nor failed).</param>
/// <param name="Detail">The outputs that failed and where (or, on a pass, every output's error).</param>
public sealed record KernelCheckResult(string Kernel, string Shape, double MaxError, double Tolerance, double Milliseconds, string? Failure = null, string? Skipped = null,
    string? Detail = null)
{
    public bool Passed => Skipped is null && MaxError <= Tolerance && double.IsFinite(MaxError);
    public bool Failed => Skipped is null && !Passed;
}

/// <summary>
/// Every kernel on a chosen device (CUDA on a GPU host) against its float64 reference: the same op
/// cases (src/Kernels/Cases: inputs, shapes, reference, tolerance) the kernel tests run on the CPU
/// accelerator in CI, with outputs poisoned first and fresh random inputs. This is the GPU half of
/// those tests. The error is max |actual - expected| / (atol + rtol |expected|): at most 1 passes.
/// </summary>
public sealed class KernelChecks(Device dev, Random rng)
{
    private readonly List<KernelCheckResult> _results = new();
    private string _label = "";

    public IReadOnlyList<KernelCheckResult> Results => _results;

    public static IReadOnlyList<KernelCheckResult> RunAll(Device dev, int seed, bool large)
    {
        var c = new KernelChecks(dev, new Random(seed));
        foreach (Conv2dShape s in Pick(ConvCase.Shapes, ConvCase.LargeShapes, large))
        {
            foreach (ConvPass pass in ConvCase.Passes) c.Run(ConvCase.OpName(pass), s, r => new ConvCase(dev, r, s, pass), ConvCase.Default(pass));
        }
        if (dev.IsCuda)
        {
            // The TF32 tensor-core forward (not the engine's default path): the case compares it with its own
            // TF32 reference at fp32 tolerance (a wrong fragment layout gives errors of order 1) and with the
            // exact reference at the TF32 tolerance. A simulated GPU lists it as skipped, with the reason.
            foreach (Conv2dShape s in Pick(ConvCase.Shapes, ConvCase.LargeShapes, large))
            {
                foreach (var (name, launcher) in new (string, ConvLauncher)[] { ("conv2d_fwd_tf32", Conv2dTf32.Forward), ("conv2d_fwd_tf32_smem_acc", Conv2dTf32.ForwardSharedAccumulators) })
                {
                    if (Conv2dTf32.CannotRunOn(dev) is { } why) c._results.Add(new KernelCheckResult(name, s.ToString(), 0, 1, 0, Skipped: why));
                    else c.Run(name, s, r => new ConvCase(dev, r, s, ConvPass.Forward), launcher, Precision.Tf32);
                }
            }
        }
        foreach (BatchNormShape s in Pick(BatchNormCase.Shapes, BatchNormCase.LargeShapes, large)) c.BatchNorm(s);
        foreach (long n in UnaryCase.Lengths) c.Elementwise(n);
        foreach (Pool2dShape s in MaxPoolForwardCase.Shapes)
        {
            c.Run("maxpool_fwd", s, r => new MaxPoolForwardCase(dev, r, s), MaxPoolForwardCase.Default);
            c.Run("maxpool_bwd", s, r => new MaxPoolBackwardCase(dev, r, s), MaxPoolBackwardCase.Default);
        }
        foreach (var (nc, hw) in AvgPoolCase.Shapes)
        {
            foreach (bool forward in new[] { true, false })
            {
                c.Run(forward ? "avgpool_fwd" : "avgpool_bwd", $"nc={nc} hw={hw}", r => new AvgPoolCase(dev, r, nc, hw, forward), AvgPoolCase.Default(forward));
            }
        }
        foreach (LinearShape s in Pick(LinearCase.Shapes, LinearCase.LargeShapes, large))
        {
            c.Run("linear_fwd", s, r => new LinearForwardCase(dev, r, s), LinearForwardCase.Default);
            c.Run("linear_bwd", s, r => new LinearBackwardCase(dev, r, s), LinearBackwardCase.Default);
        }
        foreach (var (n, k) in Pick(LossCase.Shapes, LossCase.LargeShapes, large))
        {
            c.Run("softmax_xent_fwd", $"n={n} classes={k}", r => new LossForwardCase(dev, r, n, k), LossForwardCase.Default);
            c.Run("softmax_xent_bwd", $"n={n} classes={k}", r => new LossBackwardCase(dev, r, n, k), LossBackwardCase.Default);
        }
        foreach (long n in SgdCase.Lengths) c.Sgd(n);
        foreach (AugmentShape s in AugmentCase.Shapes) c.Run("augment", s, r => new AugmentCase(dev, r, s), AugmentCase.Default);
        // The ops above take their float4 kernels where the views allow (fresh buffers, hw % 4 == 0 for
        // batch norm); once more with the scalar kernels, which the engine falls back to elsewhere.
        c._label = " (scalar)";
        using (Float4Dispatch.Suspend())
        {
            c.BatchNorm(new BatchNormShape(3, 5, 8));
            c.Elementwise(1001);
            c.Sgd(1003);
        }
        return c.Results;
    }

    private static IEnumerable<T> Pick<T>(IReadOnlyList<T> shapes, IReadOnlyList<T> largeShapes, bool large) => large ? shapes.Concat(largeShapes) : shapes;

    /// <summary>
    /// Builds <paramref name="make"/>'s case with this run's random numbers and checks <paramref name="launcher"/> on it,
    /// recording one row named <paramref name="op"/> (with the worst output's error).
    /// </summary>
    public void Run<TL>(string op, object shape, Func<Random, OpCase<TL>> make, TL launcher, Precision precision = Precision.Fp32) where TL : Delegate
        => Guard(op, shape.ToString()!, () =>
        {
            using OpCase<TL> k = make(rng);
            CheckResult r = k.CheckOutputs(launcher, precision);
            _results.Add(new KernelCheckResult(op + _label, k.Shape, r.Worst, 1.0, r.LaunchMs, Detail: r.ToString()));
        });

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

    /// <summary>Batch norm's training forward and backward, plain and fused with ReLU and with the block tail's add + ReLU.</summary>
    public void BatchNorm(BatchNormShape s)
    {
        Run("batchnorm_fwd_train", s, r => new BatchNormForwardCase(dev, r, s), BatchNormForwardCase.Default(relu: false));
        Run("batchnorm_bwd", s, r => new BatchNormBackwardCase(dev, r, s), BatchNormBackwardCase.Default);
        Run("batchnorm_relu_fwd_train", s, r => new BatchNormForwardCase(dev, r, s, relu: true), BatchNormForwardCase.Default(relu: true));
        Run("batchnorm_relu_bwd", s, r => new BatchNormReluBackwardCase(dev, r, s), BatchNormReluBackwardCase.Default);
        Run("batchnorm_add_relu_fwd_train", s, r => new BatchNormAddReluForwardCase(dev, r, s), BatchNormAddReluForwardCase.Default);
        Run("batchnorm_add_relu_bwd", s, r => new BatchNormAddReluBackwardCase(dev, r, s), BatchNormAddReluBackwardCase.Default);
    }

    /// <summary>ReLU forward and backward and the residual add.</summary>
    public void Elementwise(long n)
    {
        Run("relu_fwd", $"n={n}", r => UnaryCase.ReluForward(dev, r, n), Relu.Forward);
        Run("relu_bwd", $"n={n}", r => BinaryCase.ReluBackward(dev, r, n), Relu.Backward);
        Run("add_fwd", $"n={n}", r => BinaryCase.Add(dev, r, n), Engine.Kernels.Elementwise.Add);
    }

    /// <summary>The first SGD step (buffer started from d, never read) and a steady-state one.</summary>
    public void Sgd(long n)
    {
        foreach (bool first in new[] { true, false }) Run("sgd_step", $"n={n}", r => new SgdCase(dev, r, n, firstStep: first), SgdCase.Default);
    }
}
