using System.Diagnostics;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Parallel;

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
        "data", "h2d", "scatter", "replicate", "forward", "gather", "loss", "backward", "grad_sync", "reduce_scatter", "optimizer", "all_gather",
    };

    /// <summary>The phases that are collectives between ranks or devices (the communication track of a trace).</summary>
    public static readonly string[] CommunicationPhases = { "scatter", "replicate", "gather", "grad_sync", "reduce_scatter", "all_gather" };

    private readonly IReadOnlyList<Device> _devices;
    private readonly Stopwatch _watch = new();
    private readonly double[] _seconds = new double[Phases.Length];
    private readonly long[] _bytes = new long[Phases.Length];
    private readonly double[] _hidden = new double[Phases.Length];
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
    public double HiddenSyncSeconds => _hidden[Index("grad_sync")];

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

    /// <summary>
    /// Times the phase that starts now until the scope ends: <c>using (clock.Phase("scatter", bytes)) { ... }</c>.
    /// The phase's time is everything since the previous phase ended, so phases still add up to the step.
    /// </summary>
    public PhaseScope Phase(string phase, long bytes = 0)
    {
        Begin(phase);
        return new PhaseScope(this, phase, bytes);
    }

    /// <summary>Ends a phase opened by <see cref="Phase"/>.</summary>
    public readonly struct PhaseScope(PhaseClock clock, string phase, long bytes) : IDisposable
    {
        public void Dispose() => clock.Mark(phase, bytes);
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

    /// <summary>Collective time of <paramref name="phase"/> that ran under compute (overlap), not in the step's sum.</summary>
    public void AddHidden(string phase, double seconds) => _hidden[Index(phase)] += seconds;

    /// <summary>
    /// Moves <paramref name="seconds"/> charged to <paramref name="from"/> to <paramref name="to"/>: the time a compute
    /// phase spent blocked on a collective (FSDP waiting for a unit's all-gather inside forward) is that collective's.
    /// </summary>
    public void Reassign(string from, string to, double seconds, long bytes)
    {
        int f = Index(from), t = Index(to);
        seconds = Math.Min(seconds, _seconds[f]);
        _seconds[f] -= seconds;
        _seconds[t] += seconds;
        _bytes[t] += bytes;
    }

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
        var hidden = new Dictionary<string, double>();
        for (int i = 0; i < Phases.Length; i++)
        {
            if (_hidden[i] > 0) hidden[Phases[i]] = _hidden[i] / n;
        }
        return new Breakdown(mode, devices, shared, Steps, StepSeconds / n, phases, HiddenSyncSeconds / n) { HiddenSecondsPerStep = hidden };
    }
}

/// <summary>Seconds and bytes per step of one phase.</summary>
public sealed record PhaseStat(double SecondsPerStep, long BytesPerStep);

/// <summary>Where a mode spends its step: mean seconds and bytes per step for each phase.</summary>
/// <param name="GradSyncHiddenSecondsPerStep">All-reduce time that overlapped backward (not part of the step sum; grad_sync holds only the exposed wait).</param>
public sealed record Breakdown(string Mode, int Devices, bool Shared, int Steps, double StepSeconds,
    IReadOnlyDictionary<string, PhaseStat> Phases, double GradSyncHiddenSecondsPerStep)
{
    /// <summary>Every phase of <see cref="PhaseClock.Phases"/>, zero where the run had none (a result written before a phase existed reads as zero there).</summary>
    public IReadOnlyDictionary<string, PhaseStat> Phases { get; init; } = Complete(Phases);

    private static IReadOnlyDictionary<string, PhaseStat> Complete(IReadOnlyDictionary<string, PhaseStat> phases)
    {
        var all = new Dictionary<string, PhaseStat>(phases);
        foreach (string p in PhaseClock.Phases) all.TryAdd(p, new PhaseStat(0, 0));
        return all;
    }

    public double PhaseSum => Phases.Values.Sum(p => p.SecondsPerStep);

    /// <summary>DDP: how many buckets the gradient was cut into (one bucket cannot overlap backward); 0 for the other modes.</summary>
    public int GradientBuckets { get; init; }

    /// <summary>Per communication phase, the collective seconds per step that ran under compute (not part of the step sum).</summary>
    public IReadOnlyDictionary<string, double> HiddenSecondsPerStep { get; init; } = new Dictionary<string, double>();
}

/// <summary>One rank's device memory after training, by use (bytes), with the peak during training.</summary>
public sealed record RankMemory(int Rank, long Parameters, long Gradients, long OptimizerState, long Communication, long Activations, long Peak)
{
    public static RankMemory From(int rank, Engine.Kernels.MemorySnapshot m) => new(rank, m.Parameters, m.Gradients, m.OptimizerState, m.Communication, m.Activations, m.Peak);
}
