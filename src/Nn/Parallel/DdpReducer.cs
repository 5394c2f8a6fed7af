using System.Diagnostics;
using Engine.Comm;
using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Parallel;

/// <summary>One gradient bucket as a communication hook sees it (PyTorch's <c>GradBucket</c>).</summary>
/// <param name="Grads">The bucket's gradients, padding included (<see cref="StoreSegment.PaddedLength"/> values).</param>
public sealed record GradBucket(int Index, StoreSegment Segment, ArrayView<float> Grads)
{
    /// <summary>Set by a hook whose collective leaves the result elsewhere: run on the training thread once the collective has completed (a compression hook decompresses into <see cref="Grads"/>).</summary>
    public Action? Then { get; set; }
}

/// <summary>
/// What DDP does with a bucket once all its gradients are ready (PyTorch's <c>register_comm_hook</c>): launch a
/// collective and return its handle. The default averages the bucket over ranks with an all-reduce; ZeRO-2
/// reduce-scatters it into each rank's gradient shard.
/// </summary>
public delegate CommWork CommHook(ICommunicator comm, GradBucket bucket);

/// <summary>
/// DistributedDataParallel's reducer, as picotron's BucketManager writes it: the buckets are the store's segments
/// (<see cref="BucketPlan"/> cut them: contiguous, in the order backward makes gradients ready); backward marks each
/// parameter ready; a bucket whose parameters are all ready is handed to the communication hook at once,
/// overlapping the rest of backward; <see cref="Finish"/> waits for every bucket. With overlap off, every bucket is
/// launched after backward. Gradient accumulation (<c>no_sync</c>): a backward that does not synchronise adds its
/// gradients to an accumulator instead; the synchronising one adds the accumulator to each bucket before launching it.
/// Where the store keeps no full gradient buffer (ZeRO-2), each bucket's gradients are written into a buffer from a
/// small pool, pointed at just before backward reaches the bucket and returned once the hook's collective completes.
/// </summary>
public sealed class DdpReducer : IDisposable
{
    private readonly ICommunicator _comm;
    private readonly Device _device;
    private readonly ParameterStore _store;
    private readonly bool _overlap;
    private readonly CommHook _hook;
    private readonly List<Bucket> _buckets = new();
    private readonly Dictionary<Parameter, Bucket> _bucketOf = new();
    private readonly List<CommWork> _inFlight = new();
    private readonly BufferPool? _pool;
    private readonly GradientAccumulator _accumulator;
    private bool _sync = true;

    public sealed class Bucket(int index, StoreSegment segment, IReadOnlyList<Parameter> parameters)
    {
        public int Index { get; } = index;
        public StoreSegment Segment { get; } = segment;
        public IReadOnlyList<Parameter> Members { get; } = parameters;
        public long Offset => Segment.Offset;
        public long Length => Segment.PaddedLength;
        public int Parameters => Segment.Parameters;
        internal int Pending;
        internal CommWork? Work;
        internal Action? Then;
        internal ArrayView<float> Grads;
        internal MemoryBuffer1D<float, Stride1D.Dense>? Pooled;
    }

    /// <param name="hook">What to launch per ready bucket; <see cref="AllReduceHook"/> when null.</param>
    public DdpReducer(ICommunicator comm, Device device, ParameterStore store, bool overlap, CommHook? hook = null)
    {
        _comm = comm;
        _device = device;
        _store = store;
        _overlap = overlap;
        _hook = hook ?? AllReduceHook;
        foreach (StoreSegment s in store.Segments)
        {
            var bucket = new Bucket(_buckets.Count, s, store.FlatOrder.Skip(s.FirstParameter).Take(s.Parameters).ToList());
            foreach (Parameter m in bucket.Members) _bucketOf[m] = bucket;
            _buckets.Add(bucket);
        }
        _accumulator = new GradientAccumulator(device, store.FlatLength);
        if (!store.HoldsGrads) _pool = new BufferPool(device, store.Segments.Count == 0 ? 1 : store.Segments.Max(s => s.PaddedLength), 3, MemoryUse.Communication);
    }

    /// <summary>PyTorch's default hook: the bucket becomes the mean over ranks (all-reduce, average).</summary>
    public static CommWork AllReduceHook(ICommunicator comm, GradBucket bucket) => comm.AllReduce(bucket.Grads, ReduceOp.Avg);

    public IReadOnlyList<Bucket> Buckets => _buckets;

    public long BackwardStartTimestamp { get; private set; }
    public long BackwardEndTimestamp { get; private set; }

    /// <summary>
    /// Call before backward. <paramref name="sync"/> false (<c>no_sync</c>): this backward's gradients are kept
    /// locally and added to the next synchronising backward's.
    /// </summary>
    public void Prepare(bool sync = true)
    {
        if (!sync && !_store.HoldsGrads) throw new InvalidOperationException("no_sync needs the full gradient buffer, which this layout (ZeRO-2, FSDP) does not keep.");
        _sync = sync;
        foreach (Bucket b in _buckets)
        {
            b.Pending = b.Parameters;
            b.Work = null;
            b.Then = null;
            if (_pool is null) b.Grads = _store.Grads.SubView(b.Offset, b.Length);
        }
        _inFlight.Clear();
        if (_pool is not null && _buckets.Count > 0) PointAtPool(_buckets[0]);
        BackwardStartTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>The model's GradientReady handler: the gradient kernel of <paramref name="p"/> has been issued.</summary>
    public void MarkReady(Parameter p)
    {
        Bucket b = _bucketOf[p];
        if (_pool is not null)
        {
            if (b.Pooled is null) throw new InvalidOperationException($"{p.Name}'s gradient was written before its bucket had a buffer: backward's order is not the flat layout's.");
            // One bucket ahead: the next bucket gets its buffer when this one starts filling.
            if (b.Pending == b.Parameters && b.Index + 1 < _buckets.Count) PointAtPool(_buckets[b.Index + 1]);
        }
        if (--b.Pending == 0 && _overlap && _sync) Launch(b);
    }

    private void PointAtPool(Bucket b)
    {
        b.Pooled = _pool!.Take();
        b.Grads = ((ArrayView<float>)b.Pooled.View).SubView(0, b.Length);
        // The padding goes into the collective: it must be zero (another bucket may have used these elements).
        if (b.Length > b.Segment.Length) Elementwise.Fill(_device, b.Grads.SubView(b.Segment.Length, b.Length - b.Segment.Length), 0f);
        _store.Point(b.Members, b.Grads, b.Offset, values: false);
    }

    private void Launch(Bucket b)
    {
        _accumulator.AddTo(b.Grads, b.Offset);
        var bucket = new GradBucket(b.Index, b.Segment, b.Grads);
        b.Work = _hook(_comm, bucket);
        b.Then = bucket.Then;
        if (b.Pooled is not null) _pool!.Return(b.Pooled, b.Work);
        b.Pooled = null;
        _inFlight.Add(b.Work);
    }

    /// <summary>After backward: launches what has not been launched (all buckets without overlap), then waits for every bucket.</summary>
    public void Finish()
    {
        BackwardEndTimestamp = Stopwatch.GetTimestamp();
        foreach (Bucket b in _buckets)
        {
            if (b.Pending != 0) throw new InvalidOperationException($"Bucket {b.Index}: {b.Pending} parameter(s) never became ready in backward.");
        }
        if (!_sync)
        {
            // no_sync: keep this micro-batch's gradients for the synchronising backward.
            _accumulator.Keep(_store.Grads.SubView(0, _store.FlatLength));
            return;
        }
        foreach (Bucket b in _buckets)
        {
            if (b.Work is null) Launch(b);
        }
        _accumulator.Clear(); // every bucket has added its part (the kernels are ordered before the clear on the stream)
        CommWork.WaitAll(_inFlight);
        foreach (Bucket b in _buckets)
        {
            b.Then?.Invoke();
            b.Then = null;
        }
    }

    /// <summary>Collective seconds that ran while backward was still issuing work (between Prepare and Finish).</summary>
    public double HiddenSeconds() => Overlap.Seconds(_inFlight, BackwardStartTimestamp, BackwardEndTimestamp);

    /// <summary>One slice per bucket's collective, on the communication track.</summary>
    public void TraceBuckets(TraceRecorder? trace, string track)
    {
        if (trace is null) return;
        foreach (Bucket b in _buckets)
        {
            if (b.Work is { } w)
            {
                trace.Slice($"{w.Operation} bucket {b.Index}", "comm", track, w.StartedTimestamp, w.CompletedTimestamp, b.Length * sizeof(float), $"{b.Parameters} parameters");
            }
        }
    }

    public void Dispose()
    {
        _pool?.Dispose();
        _accumulator.Dispose();
    }
}

/// <summary>How much of a set of collectives ran inside a window of compute (the overlap that hides communication).</summary>
public static class Overlap
{
    public static double Seconds(IEnumerable<CommWork> works, long windowStart, long windowEnd)
    {
        double hidden = 0;
        foreach (CommWork w in works)
        {
            long start = Math.Max(w.StartedTimestamp, windowStart);
            long end = Math.Min(w.CompletedTimestamp, windowEnd);
            if (end > start) hidden += (end - start) / (double)Stopwatch.Frequency;
        }
        return hidden;
    }
}

/// <summary>
/// Equal device buffers handed out and taken back with the collective that still uses them: a buffer is handed out
/// again only once that collective has completed (waiting for it when all buffers are out), so a bounded number
/// exists. ZeRO-2's gradient buckets (the bucket backward fills, the next one, one in flight) and FSDP's gathered
/// units (the unit computing and the one prefetched) take a few units of memory this way, not the whole model's.
/// </summary>
internal sealed class BufferPool(Device device, long length, int maxBuffers, MemoryUse use) : IDisposable
{
    private readonly List<MemoryBuffer1D<float, Stride1D.Dense>> _all = new();
    private readonly Queue<(MemoryBuffer1D<float, Stride1D.Dense> Buffer, CommWork? Work)> _returned = new();

    public MemoryBuffer1D<float, Stride1D.Dense> Take()
    {
        if (_returned.Count > 0 && (_returned.Peek().Work is null or { IsCompleted: true } || _all.Count >= maxBuffers))
        {
            var (buffer, work) = _returned.Dequeue();
            work?.Wait();
            return buffer;
        }
        if (_all.Count >= maxBuffers) throw new InvalidOperationException($"All {maxBuffers} pooled buffers are in use.");
        var fresh = device.Allocate<float>(Math.Max(1, length), use);
        _all.Add(fresh);
        return fresh;
    }

    /// <summary>Hands <paramref name="buffer"/> back; it is reused only after <paramref name="work"/> (if any) completes.</summary>
    public void Return(MemoryBuffer1D<float, Stride1D.Dense> buffer, CommWork? work) => _returned.Enqueue((buffer, work));

    public void Dispose()
    {
        foreach (var b in _all) b.Dispose();
        _all.Clear();
        _returned.Clear();
    }
}
