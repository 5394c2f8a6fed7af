using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Bench;

/// <summary>
/// Times launches on a device's stream with ILGPU profiling markers around each one (CUDA events on
/// a GPU, timestamps on the CPU accelerator): the warm-up runs first, then every timed run gets its
/// own start/end pair, read after one synchronisation at the end, so no host wait sits between runs.
/// </summary>
public static class Timing
{
    /// <summary>Milliseconds of each timed run of <paramref name="launch"/> (its argument is the run's index, warm-up included).</summary>
    public static double[] Runs(Device dev, Action<int> launch, int warmup, int runs)
    {
        if (runs < 1) throw new ArgumentException($"--runs must be at least 1, got {runs}.");
        if (warmup < 0) throw new ArgumentException($"--warmup must be non-negative, got {warmup}.");
        for (int i = 0; i < warmup; i++) launch(i);
        dev.Synchronize();
        var markers = new (ProfilingMarker Start, ProfilingMarker End)[runs];
        for (int i = 0; i < runs; i++)
        {
            ProfilingMarker start = dev.Stream.AddProfilingMarker();
            launch(warmup + i);
            markers[i] = (start, dev.Stream.AddProfilingMarker());
        }
        dev.Synchronize();
        var ms = new double[runs];
        for (int i = 0; i < runs; i++)
        {
            ms[i] = (markers[i].End - markers[i].Start).TotalMilliseconds;
            markers[i].Start.Dispose();
            markers[i].End.Dispose();
        }
        return ms;
    }

    public static double MedianMs(Device dev, Action launch, int warmup, int runs) => Median(Runs(dev, _ => launch(), warmup, runs));

    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) throw new ArgumentException("No values to take the median of.");
        var sorted = values.OrderBy(v => v).ToArray();
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
    }
}
