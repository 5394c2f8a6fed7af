using System.Diagnostics;
using Engine.Comm;
using Engine.Nn;
using ILGPU;

namespace Engine.Runner.Training;

/// <summary>
/// DistributedDataParallel's reducer, as picotron's BucketManager writes it: the flat gradient buffer
/// is cut into contiguous buckets (<see cref="BucketPlan"/>: the first capped at 1 MiB, the rest at
/// --bucket-mb) in the order backward makes gradients ready; backward marks each parameter ready; a bucket whose parameters
/// are all ready launches its all-reduce (average) at once, overlapping the rest of backward; the
/// step waits for every bucket. With overlap off, every bucket is launched after backward.
/// </summary>
public sealed class DdpReducer
{
    private readonly ICommunicator _comm;
    private readonly ParameterStore _store;
    private readonly bool _overlap;
    private readonly List<Bucket> _buckets = new();
    private readonly Dictionary<Parameter, Bucket> _bucketOf = new();
    private readonly List<CommWork> _inFlight = new();

    public sealed class Bucket(int index, long offset, long length, int parameters)
    {
        public int Index { get; } = index;
        public long Offset { get; } = offset;
        public long Length { get; } = length;
        public int Parameters { get; } = parameters;
        internal int Pending;
        internal CommWork? Work;
    }

    public DdpReducer(ICommunicator comm, ParameterStore store, double bucketMb, bool overlap)
    {
        _comm = comm;
        _store = store;
        _overlap = overlap;
        // Parameters in flat-buffer order are the order backward makes them ready.
        var ordered = store.Parameters.OrderBy(p => p.Offset).ToList();
        long start = 0;
        foreach (PlannedBucket planned in BucketPlan.Cut(ordered.Select(p => p.Length * sizeof(float)).ToArray(), bucketMb))
        {
            var members = ordered.GetRange(planned.FirstParameter, planned.Parameters);
            long length = members.Sum(m => m.Length);
            var bucket = new Bucket(_buckets.Count, start, length, members.Count);
            foreach (Parameter m in members) _bucketOf[m] = bucket;
            _buckets.Add(bucket);
            start += length;
        }
    }

    public IReadOnlyList<Bucket> Buckets => _buckets;

    public long BackwardStartTimestamp { get; private set; }
    public long BackwardEndTimestamp { get; private set; }

    /// <summary>Call before backward: every bucket waits for all its parameters again.</summary>
    public void Prepare()
    {
        foreach (Bucket b in _buckets)
        {
            b.Pending = b.Parameters;
            b.Work = null;
        }
        _inFlight.Clear();
        BackwardStartTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>The model's GradientReady handler: the gradient kernel of <paramref name="p"/> has been issued.</summary>
    public void MarkReady(Parameter p)
    {
        Bucket b = _bucketOf[p];
        if (--b.Pending == 0 && _overlap) Launch(b);
    }

    private void Launch(Bucket b)
    {
        b.Work = _comm.AllReduce(_store.Grads.SubView(b.Offset, b.Length), ReduceOp.Avg);
        _inFlight.Add(b.Work);
    }

    /// <summary>After backward: launches what has not been launched (all buckets without overlap), then waits for every bucket.</summary>
    public void Finish()
    {
        BackwardEndTimestamp = Stopwatch.GetTimestamp();
        foreach (Bucket b in _buckets)
        {
            if (b.Pending != 0) throw new InvalidOperationException($"Bucket {b.Index}: {b.Pending} parameter(s) never became ready in backward.");
            if (b.Work is null) Launch(b);
        }
        CommWork.WaitAll(_inFlight);
    }

    /// <summary>All-reduce seconds that ran while backward was still issuing work (between Prepare and Finish).</summary>
    public double HiddenSeconds()
    {
        double hidden = 0;
        foreach (CommWork w in _inFlight)
        {
            long start = Math.Max(w.StartedTimestamp, BackwardStartTimestamp);
            long end = Math.Min(w.CompletedTimestamp, BackwardEndTimestamp);
            if (end > start) hidden += (end - start) / (double)Stopwatch.Frequency;
        }
        return hidden;
    }

    /// <summary>One slice per bucket's all-reduce, on the communication track.</summary>
    public void TraceBuckets(TraceRecorder? trace, string track)
    {
        if (trace is null) return;
        foreach (Bucket b in _buckets)
        {
            if (b.Work is { } w)
            {
                trace.Slice($"allreduce bucket {b.Index}", "comm", track, w.StartedTimestamp, w.CompletedTimestamp, b.Length * sizeof(float), $"{b.Parameters} parameters");
            }
        }
    }

    /// <summary>Bytes a ring all-reduce sends per rank for the whole gradient: 2(n-1)/n of it.</summary>
    public long RingBytesPerRank() => _comm.WorldSize <= 1 ? 0 : 2L * (_comm.WorldSize - 1) * _store.ParameterCount * sizeof(float) / _comm.WorldSize;
}
