using System.Globalization;
using System.Text;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>One row of the per-kernel table.</summary>
public sealed record KernelStat(string Name, int Calls, double Seconds, long Flops, long Bytes)
{
    public double MeanSeconds => Calls == 0 ? 0 : Seconds / Calls;
    public double GflopPerSecond => Seconds > 0 ? Flops / Seconds / 1e9 : 0;
    public double GigabytesPerSecond => Seconds > 0 ? Bytes / Seconds / 1e9 : 0;
}

/// <summary>
/// Times every launch of a device (and every copy the runner reports) with ILGPU profiling markers
/// on the device's stream (CUDA events on a GPU, timestamps on the CPU accelerator), and adds them up
/// per kernel name, like torch.profiler's key_averages. Markers are resolved when the table is read,
/// so profiling adds no host synchronisation to the step.
/// </summary>
public sealed class KernelProfiler
{
    private readonly List<(string Name, Device Device, ProfilingMarker Start, ProfilingMarker End, Cost Cost)> _pending = new();
    private readonly Dictionary<Device, (ProfilingMarker Marker, long HostTimestamp)> _bases = new();

    /// <summary>
    /// Receives every launch as a slice (kernel name, device, start and end as <see cref="System.Diagnostics.Stopwatch"/>
    /// timestamps, cost) when <see cref="Flush"/> resolves it; used to draw kernels in the trace.
    /// </summary>
    public Action<string, Device, long, long, Cost>? SliceSink { get; set; }

    /// <summary>
    /// Anchors the device's markers to host time: call with the device idle (just synchronised); later
    /// launches are placed at this host time plus their marker distance from this point.
    /// </summary>
    public void Anchor(Device dev)
    {
        if (SliceSink is null) return;
        ProfilingMarker marker = dev.Stream.AddProfilingMarker();
        marker.Synchronize();
        long host = System.Diagnostics.Stopwatch.GetTimestamp();
        lock (_gate)
        {
            if (_bases.TryGetValue(dev, out var old) && !_pending.Any(p => p.Device == dev)) old.Marker.Dispose();
            _bases[dev] = (marker, host);
        }
    }
    private readonly Dictionary<string, (int Calls, double Seconds, long Flops, long Bytes)> _totals = new();
    private readonly object _gate = new();

    /// <summary>Starts timing one launch on <paramref name="dev"/>'s stream; dispose the scope after the launch.</summary>
    public Scope Measure(Device dev, string name, Cost cost) => new(this, dev, name, cost, dev.Stream.AddProfilingMarker());

    public readonly struct Scope : IDisposable
    {
        private readonly KernelProfiler? _owner;
        private readonly Device? _device;
        private readonly string? _name;
        private readonly Cost _cost;
        private readonly ProfilingMarker? _start;

        internal Scope(KernelProfiler owner, Device device, string name, Cost cost, ProfilingMarker start)
        {
            _owner = owner;
            _device = device;
            _name = name;
            _cost = cost;
            _start = start;
        }

        public void Dispose()
        {
            if (_owner is null) return;
            ProfilingMarker end = _device!.Stream.AddProfilingMarker();
            lock (_owner._gate) _owner._pending.Add((_name!, _device, _start!, end, _cost));
        }
    }

    /// <summary>Resolves the pending markers (waits for them) into the totals.</summary>
    public void Flush()
    {
        lock (_gate)
        {
            foreach (var (name, device, start, end, cost) in _pending)
            {
                end.Synchronize();
                double seconds = (end - start).TotalSeconds;
                if (SliceSink is not null && _bases.TryGetValue(device, out var anchor))
                {
                    long from = anchor.HostTimestamp + (long)((start - anchor.Marker).TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
                    SliceSink(name, device, from, from + (long)(seconds * System.Diagnostics.Stopwatch.Frequency), cost);
                }
                _totals.TryGetValue(name, out var t);
                _totals[name] = (t.Calls + 1, t.Seconds + seconds, t.Flops + cost.Flops, t.Bytes + cost.Bytes);
                start.Dispose();
                end.Dispose();
            }
            _pending.Clear();
        }
    }

    public IReadOnlyList<KernelStat> Stats()
    {
        Flush();
        lock (_gate)
        {
            return _totals.Select(kv => new KernelStat(kv.Key, kv.Value.Calls, kv.Value.Seconds, kv.Value.Flops, kv.Value.Bytes))
                .OrderByDescending(k => k.Seconds).ToList();
        }
    }

    public void Reset()
    {
        Flush();
        lock (_gate) _totals.Clear();
    }

    /// <summary>
    /// The table: name, calls, total and mean time, share of <paramref name="totalSeconds"/> (the timed
    /// steps), achieved GFLOP/s or GB/s; the time not inside any kernel or copy is shown as other/launch.
    /// </summary>
    public static string Table(IReadOnlyList<KernelStat> stats, double totalSeconds, int steps)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(string.Format(inv, "{0,-26} {1,8} {2,12} {3,12} {4,8} {5,14}", "kernel", "calls", "total ms", "mean us", "share", "achieved"));
        double sum = 0;
        foreach (KernelStat k in stats)
        {
            sum += k.Seconds;
            string achieved = k.Flops > 0 ? $"{k.GflopPerSecond:F1} GFLOP/s" : k.Bytes > 0 ? $"{k.GigabytesPerSecond:F1} GB/s" : "";
            sb.AppendLine(string.Format(inv, "{0,-26} {1,8} {2,12:F3} {3,12:F1} {4,7:F1}% {5,14}", k.Name.StartsWith("memcpy", StringComparison.Ordinal) ? k.Name : "Kernel_" + k.Name, k.Calls, 1000 * k.Seconds,
                1e6 * k.MeanSeconds, totalSeconds > 0 ? 100 * k.Seconds / totalSeconds : 0, achieved));
        }
        double other = Math.Max(0, totalSeconds - sum);
        sb.AppendLine(string.Format(inv, "{0,-26} {1,8} {2,12:F3} {3,12} {4,7:F1}%", "other/launch", "", 1000 * other, "", totalSeconds > 0 ? 100 * other / totalSeconds : 0));
        sb.AppendLine(string.Format(inv, "{0,-26} {1,8} {2,12:F3}   over {3} step(s), {4:F3} ms per step", "total", "", 1000 * totalSeconds, steps, steps > 0 ? 1000 * totalSeconds / steps : 0));
        return sb.ToString();
    }
}
