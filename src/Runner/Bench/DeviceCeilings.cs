using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Bench;

/// <summary>
/// What the device can do at best, measured in the same run as the kernels so that each kernel is
/// read as a share of it: the copy bandwidth of a large device-to-device copy (bytes read + written
/// per second, the ceiling of memory-bound kernels) and the fp32 FMA rate of a kernel that does
/// nothing but independent FMAs in registers (the ceiling of GEMM-shaped kernels without tensor cores).
/// </summary>
public sealed record DeviceCeilings(long CopyBytes, double CopyMs, double CopyGBps, long FmaFlops, double FmaMs, double FmaGflops)
{
    /// <summary>FMAs one thread of <see cref="FmaKernel"/> runs per loop iteration (8 chains x 4).</summary>
    public const int FmasPerIteration = 32;

    /// <summary>No ceilings (NaN rates): what a simulated GPU reports, see <see cref="Measure"/>.</summary>
    public static DeviceCeilings NotMeasured { get; } = new(0, double.NaN, double.NaN, 0, double.NaN, double.NaN);

    public bool Measured => double.IsFinite(CopyGBps) && double.IsFinite(FmaGflops);

    /// <summary>
    /// Every thread keeps 8 independent accumulators (enough in-flight FMAs to hide the pipeline
    /// latency) and advances each 4 times per iteration with a = a*m + c: no memory traffic in the
    /// loop, one store at the end so the compiler cannot drop the work. m &lt; 1 keeps every value
    /// finite (a converges to c/(1 - m)). Written as a*m + c, as the GEMM kernels write theirs: ILGPU
    /// emits mul.f32 + add.f32 without rounding modifiers, which ptxas contracts into one FFMA (PTX
    /// allows it for unrounded mul/add), so this is the rate the engine's own kernels can reach.
    /// MathF.FusedMultiplyAdd would not help: ILGPU 1.5.3 compiles it to a function call.
    /// </summary>
    [KernelName("bench_fma")]
    public static void FmaKernel(Index1D i, ArrayView<float> output, int iterations, float m)
    {
        float a0 = i * 1e-7f, a1 = a0 + 0.1f, a2 = a0 + 0.2f, a3 = a0 + 0.3f, a4 = a0 + 0.4f, a5 = a0 + 0.5f, a6 = a0 + 0.6f, a7 = a0 + 0.7f;
        for (int k = 0; k < iterations; k++)
        {
            a0 = a0 * m + 0.01f; a1 = a1 * m + 0.02f; a2 = a2 * m + 0.03f; a3 = a3 * m + 0.04f;
            a4 = a4 * m + 0.05f; a5 = a5 * m + 0.06f; a6 = a6 * m + 0.07f; a7 = a7 * m + 0.08f;
            a0 = a0 * m + 0.01f; a1 = a1 * m + 0.02f; a2 = a2 * m + 0.03f; a3 = a3 * m + 0.04f;
            a4 = a4 * m + 0.05f; a5 = a5 * m + 0.06f; a6 = a6 * m + 0.07f; a7 = a7 * m + 0.08f;
            a0 = a0 * m + 0.01f; a1 = a1 * m + 0.02f; a2 = a2 * m + 0.03f; a3 = a3 * m + 0.04f;
            a4 = a4 * m + 0.05f; a5 = a5 * m + 0.06f; a6 = a6 * m + 0.07f; a7 = a7 * m + 0.08f;
            a0 = a0 * m + 0.01f; a1 = a1 * m + 0.02f; a2 = a2 * m + 0.03f; a3 = a3 * m + 0.04f;
            a4 = a4 * m + 0.05f; a5 = a5 * m + 0.06f; a6 = a6 * m + 0.07f; a7 = a7 * m + 0.08f;
        }
        output[i] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    }

    /// <summary>
    /// Measures both ceilings on <paramref name="dev"/>: medians of <paramref name="runs"/> timed runs after warm-up.
    /// Not on a simulated GPU (<see cref="NotMeasured"/>): its timing model runs 10-20 thousand cycles a second, so a
    /// 256 MiB copy and a launch of several milliseconds would take hours, and the small ones it could afford would
    /// measure caches, not the ceilings.
    /// </summary>
    public static DeviceCeilings Measure(Device dev, int runs)
    {
        if (dev.IsSimulated) return NotMeasured;
        var (copyBytes, copyMs) = MeasureCopy(dev, runs);
        var (fmaFlops, fmaMs) = MeasureFma(dev, runs);
        return new DeviceCeilings(copyBytes, copyMs, copyBytes / (copyMs * 1e-3) / 1e9, fmaFlops, fmaMs, fmaFlops / (fmaMs * 1e-3) / 1e9);
    }

    /// <summary>A 256 MiB copy on a GPU (far past its L2), 16 MiB on the CPU accelerator; counts bytes read plus written.</summary>
    private static (long Bytes, double Ms) MeasureCopy(Device dev, int runs)
    {
        long elements = (dev.IsCpu ? 16L : 256L) << 20 >> 2;
        using var a = dev.Allocate<float>(elements);
        using var b = dev.Allocate<float>(elements);
        Engine.Kernels.Elementwise.Fill(dev, a.View, 1f);
        double ms = Timing.MedianMs(dev, () => a.View.CopyTo(dev.Stream, b.View), warmup: 2, runs);
        return (2 * elements * sizeof(float), ms);
    }

    /// <summary>
    /// Enough threads to fill every multiprocessor (twice over on a GPU); iterations doubled until one
    /// launch takes at least a few milliseconds, so launch overhead does not count.
    /// </summary>
    private static (long Flops, double Ms) MeasureFma(Device dev, int runs)
    {
        var kernel = dev.Kernel("bench_fma", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, int, float>(FmaKernel));
        int threads = dev.IsCpu ? dev.Accelerator.MaxNumThreads : 2 * dev.Accelerator.MaxNumThreads;
        using var output = dev.Allocate<float>(threads);
        double targetMs = dev.IsCpu ? 20 : 5;
        int iterations = 64;
        double ms = Timing.MedianMs(dev, () => kernel(dev.Stream, threads, output.View, iterations, 0.999f), warmup: 1, runs: 1);
        while (ms < targetMs && iterations < (1 << 24))
        {
            iterations *= 2;
            ms = Timing.MedianMs(dev, () => kernel(dev.Stream, threads, output.View, iterations, 0.999f), warmup: 0, runs: 1);
        }
        ms = Timing.MedianMs(dev, () => kernel(dev.Stream, threads, output.View, iterations, 0.999f), warmup: 1, runs);
        return (2L * FmasPerIteration * iterations * threads, ms);
    }
}
