using System.Diagnostics;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>
/// Splits each training step into named phases. <see cref="Mark"/> synchronises the devices it was
/// given, charges the time since the previous mark to a phase, and adds the bytes that phase moved,
/// so the phases of a step add up to the step by construction. (Synchronising costs a little on a
/// GPU; that is the price of attributing time to phases with host timers.)
/// </summary>
public sealed class PhaseClock
{
    public static readonly string[] Phases =
    {
        "data", "h2d", "scatter", "replicate", "forward", "gather", "loss", "backward", "grad_sync", "optimizer",
    };

    private readonly IReadOnlyList<Device> _devices;
    private readonly Stopwatch _watch = new();
    private readonly double[] _seconds = new double[Phases.Length];
    private readonly long[] _bytes = new long[Phases.Length];
    private double _last;

    private long _lastTimestamp;

    public PhaseClock(IReadOnlyList<Device> devices, TraceRecorder? trace = null, string track = "device 0")
    {
        _devices = devices;
        Trace = trace;
        Track = track;
    }

    /// <summary>Where phases go as slices, when tracing.</summary>
    public TraceRecorder? Trace { get; }

    /// <summary>The track the step's phases are drawn on (device 0 in dp, the rank's device in ddp).</summary>
    public string Track { get; }

    public int Steps { get; private set; }
    public double StepSeconds { get; private set; }

    /// <summary>Gradient all-reduce time that ran while backward was still computing (DDP overlap), summed over steps.</summary>
    public double HiddenSyncSeconds { get; private set; }

    public void BeginStep()
    {
        foreach (Device d in _devices) d.Synchronize();
        _watch.Restart();
        _last = 0;
        _lastTimestamp = Stopwatch.GetTimestamp();
    }

    private bool _rangeOpen;

    /// <summary>Opens an NVTX range named after the phase that starts now (closed by the next <see cref="Mark"/>), for Nsight.</summary>
    public void Begin(string phase)
    {
        if (!Engine.Kernels.Nvtx.Enabled) return;
        if (_rangeOpen) Engine.Kernels.Nvtx.Pop();
        Engine.Kernels.Nvtx.Push(phase);
        _rangeOpen = true;
    }

    public void Mark(string phase, long bytes = 0)
    {
        if (_rangeOpen)
        {
            Engine.Kernels.Nvtx.Pop();
            _rangeOpen = false;
        }
        foreach (Device d in _devices) d.Synchronize();
        double now = _watch.Elapsed.TotalSeconds;
        int i = Index(phase);
        _seconds[i] += now - _last;
        _bytes[i] += bytes;
        _last = now;
        long ts = Stopwatch.GetTimestamp();
        Trace?.Slice(phase, "phase", Track, _lastTimestamp, ts, bytes);
        _lastTimestamp = ts;
    }

    /// <summary>Bytes a phase moved without a time of its own (already charged elsewhere).</summary>
    public void AddBytes(string phase, long bytes) => _bytes[Index(phase)] += bytes;

    public void AddHidden(double seconds) => HiddenSyncSeconds += seconds;

    public void EndStep()
    {
        Steps++;
        StepSeconds += _watch.Elapsed.TotalSeconds;
    }

    private static int Index(string phase)
    {
        int i = Array.IndexOf(Phases, phase);
        return i >= 0 ? i : throw new ArgumentException($"Unknown phase '{phase}'.");
    }

    public Breakdown ToBreakdown(string mode, int devices, bool shared)
    {
        int n = Math.Max(1, Steps);
        var phases = new Dictionary<string, PhaseStat>();
        for (int i = 0; i < Phases.Length; i++)
        {
            phases[Phases[i]] = new PhaseStat(_seconds[i] / n, _bytes[i] / n);
        }
        return new Breakdown(mode, devices, shared, Steps, StepSeconds / n, phases, HiddenSyncSeconds / n);
    }
}

/// <summary>Seconds and bytes per step of one phase.</summary>
public sealed record PhaseStat(double SecondsPerStep, long BytesPerStep);

/// <summary>Where a mode spends its step: mean seconds and bytes per step for each phase.</summary>
/// <param name="GradSyncHiddenSecondsPerStep">All-reduce time that overlapped backward (not part of the step sum; grad_sync holds only the exposed wait).</param>
public sealed record Breakdown(string Mode, int Devices, bool Shared, int Steps, double StepSeconds,
    IReadOnlyDictionary<string, PhaseStat> Phases, double GradSyncHiddenSecondsPerStep)
{
    public double PhaseSum => Phases.Values.Sum(p => p.SecondsPerStep);

    /// <summary>DDP: how many buckets the gradient was cut into (one bucket cannot overlap backward); 0 for the other modes.</summary>
    public int GradientBuckets { get; init; }
}
