using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>What a device buffer holds, for the per-rank memory report (the ZeRO paper's split of model state).</summary>
public enum MemoryUse
{
    /// <summary>Activations and every other working buffer: input batches, layer outputs kept for backward, scratch.</summary>
    Activations,

    /// <summary>The model's parameters (a replica, or this rank's shard).</summary>
    Parameters,

    /// <summary>The parameters' gradients (full, or this rank's shard).</summary>
    Gradients,

    /// <summary>Optimizer state: SGD's momentum buffer (full, or this rank's shard).</summary>
    OptimizerState,

    /// <summary>Buffers that exist for communication: gathered units, gradient buckets, padded staging.</summary>
    Communication,
}

/// <summary>
/// Counts a device's allocations by use: the bytes live now and the peak, as torch.cuda.memory_allocated and
/// max_memory_allocated do. Every buffer made through <see cref="Device.Allocate{T}"/> is counted from its
/// allocation to its disposal; a buffer counts at its allocated size (a prefix view of it does not shrink it).
/// </summary>
public sealed class DeviceMemory
{
    private readonly object _gate = new();
    private readonly List<(MemoryBuffer Buffer, MemoryUse Use)> _live = new();
    private long _peak;

    internal void Add(MemoryBuffer buffer, MemoryUse use)
    {
        lock (_gate)
        {
            Prune();
            _live.Add((buffer, use));
            _peak = Math.Max(_peak, LiveLocked());
        }
    }

    /// <summary>Bytes of live buffers of <paramref name="use"/>.</summary>
    public long Live(MemoryUse use)
    {
        lock (_gate)
        {
            Prune();
            long sum = 0;
            foreach (var (b, u) in _live) if (u == use) sum += b.LengthInBytes;
            return sum;
        }
    }

    /// <summary>Bytes of every live buffer.</summary>
    public long Total
    {
        get
        {
            lock (_gate)
            {
                Prune();
                return LiveLocked();
            }
        }
    }

    /// <summary>The most bytes live at once since the device was made or <see cref="ResetPeak"/>.</summary>
    public long Peak
    {
        get
        {
            lock (_gate) return _peak;
        }
    }

    /// <summary>Starts a new peak from what is live now (torch.cuda.reset_peak_memory_stats).</summary>
    public void ResetPeak()
    {
        lock (_gate)
        {
            Prune();
            _peak = LiveLocked();
        }
    }

    /// <summary>Live bytes per use and the peak, in one snapshot.</summary>
    public MemorySnapshot Snapshot() => new(Live(MemoryUse.Parameters), Live(MemoryUse.Gradients), Live(MemoryUse.OptimizerState),
        Live(MemoryUse.Communication), Live(MemoryUse.Activations), Peak);

    private long LiveLocked()
    {
        long sum = 0;
        foreach (var (b, _) in _live) sum += b.LengthInBytes;
        return sum;
    }

    private void Prune() => _live.RemoveAll(e => e.Buffer.IsDisposed);
}

/// <summary>Bytes held on one device, by use, and the peak (the run JSON's <c>memory</c> object).</summary>
public sealed record MemorySnapshot(long Parameters, long Gradients, long OptimizerState, long Communication, long Activations, long Peak)
{
    public long Total => Parameters + Gradients + OptimizerState + Communication + Activations;
}
