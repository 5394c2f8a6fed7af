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
        IReadOnlyList<CaseCheck> checks = CaseCatalog.Checks(large);
        foreach (CaseCheck check in checks) c.Run(check);
        // The double-buffered conv slab loops (bench variants, not the engine's path), on every device.
        foreach (Conv2dShape s in CaseCheck.Sizes(ConvCase.Shapes, ConvCase.LargeShapes, large))
        {
            c.Run("conv2d_fwd_db", s, r => new ConvCase(dev, r, s, ConvPass.Forward), Conv2d.ForwardDoubleBuffered);
            c.Run("conv2d_bwd_data_phase_db", s, r => new ConvCase(dev, r, s, ConvPass.BackwardData), Conv2d.BackwardDataPhasedDoubleBuffered);
            c.Run("conv2d_bwd_weight_db", s, r => new ConvCase(dev, r, s, ConvPass.BackwardWeight), Conv2d.BackwardWeightDoubleBuffered);
        }
        if (dev.IsCuda)
        {
            // The TF32 tensor-core forwards (not the engine's default path): the conv case compares them with
            // their TF32 reference at fp32 tolerance (a wrong fragment layout gives errors of order 1) and with
            // the exact reference at the TF32 tolerance. A simulated GPU lists them as skipped, with the reason.
            foreach (Conv2dShape s in CaseCheck.Sizes(ConvCase.Shapes, ConvCase.LargeShapes, large))
            {
                foreach (var (name, launcher) in new (string, ConvLauncher)[] { ("conv2d_fwd_tf32", Conv2dTf32.Forward), ("conv2d_fwd_tf32_smem_acc", Conv2dTf32.ForwardSharedAccumulators) })
                {
                    if (Conv2dTf32.CannotRunOn(dev) is { } why) c._results.Add(new KernelCheckResult(name, s.ToString(), 0, 1, 0, Skipped: why));
                    else c.Run(name, s, r => new ConvCase(dev, r, s, ConvPass.Forward), launcher, Precision.Tf32);
                }
            }
        }
        // The ops above take their float4 kernels where the views allow (fresh buffers, hw % 4 == 0 for
        // batch norm); once more with the scalar kernels, which the engine falls back to elsewhere.
        c._label = " (scalar)";
        using (Float4Dispatch.Suspend())
        {
            foreach (CaseCheck check in checks.Where(k => ScalarFallbacks.Any(op => k.Op.StartsWith(op, StringComparison.Ordinal)))) c.Run(check);
        }
        return c.Results;
    }

    /// <summary>The ops with float4 kernels and a scalar fallback.</summary>
    private static readonly string[] ScalarFallbacks = ["batchnorm", "relu", "add", "sgd"];

    /// <summary>Runs one op check of the catalog with this run's random numbers, recording one row (the worst output's error).</summary>
    public void Run(CaseCheck check) => Guard(check.Op, check.Shape, () =>
    {
        CheckResult r = check.Run(dev, rng);
        _results.Add(new KernelCheckResult(check.Op + _label, r.Shape, r.Worst, 1.0, r.LaunchMs, Detail: r.ToString()));
    });

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
}
