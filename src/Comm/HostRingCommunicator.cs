using System.Diagnostics;
using ILGPU;
using Device = Engine.Kernels.Device;

namespace Engine.Comm;

/// <summary>
/// The CPU backend, and the one for ranks that share a GPU: collectives over a ring of TCP
/// connections (each rank sends to rank+1 and receives from rank-1), device buffers staged through
/// pinned host memory, reductions done on the host with SIMD.
/// </summary>
/// <remarks>
/// Each operation is the same four moves, each done by its own piece: the <see cref="CollectiveQueue"/>
/// runs it on the communicator's thread after the caller's kernels; <see cref="HostStaging"/> copies the
/// device buffer to pinned host memory; <see cref="RingTransport"/> runs the operation's
/// <see cref="RingSchedule"/> (which block goes where at each step, and the slice-by-slice pipelining)
/// over the links that <see cref="RingSetup"/> built; the result is copied back. A failure is explained
/// by the <see cref="FailureDiagnosis"/> that the NCCL backend uses too.
/// </remarks>
public sealed class HostRingCommunicator : ICommunicator
{
    /// <summary>Bytes per pipelined slice: large enough to amortise a system call, small enough to keep every link busy.</summary>
    public const int DefaultSliceBytes = 512 << 10;

    private readonly RendezvousClient? _store;
    private readonly IDisposable? _ownedServer;
    private readonly RingTransport? _ring;
    private readonly HostStaging _staging;
    private readonly CollectiveQueue _queue;
    private readonly FailureDiagnosis _diagnosis;
    private readonly int _sliceElements;
    private TimeSpan _timeout;
    private long _sequence;
    private bool _disposed;

    public int Rank { get; }

    public int WorldSize { get; }

    public string Backend => "host";

    public TimeSpan Timeout
    {
        get => _timeout;
        set
        {
            _timeout = value;
            if (_ring is not null)
            {
                _ring.Timeout = value;
            }
            if (_store is not null)
            {
                _store.Timeout = value;
            }
        }
    }

    private HostRingCommunicator(Device dev, RendezvousClient? store, IDisposable? ownedServer, int rank, int worldSize,
        RingTransport? ring, TimeSpan timeout, int sliceBytes)
    {
        _store = store;
        _ownedServer = ownedServer;
        Rank = rank;
        WorldSize = worldSize;
        _ring = ring;
        _timeout = timeout;
        _sliceElements = Math.Max(1, sliceBytes / sizeof(float));
        _staging = new HostStaging(dev);
        _diagnosis = new FailureDiagnosis(rank, store);
        _queue = new CollectiveQueue(dev, rank, $"comm-host-rank{rank}", Diagnose);
    }

    /// <summary>
    /// Builds the ring (<see cref="RingSetup"/>), bounded by <paramref name="timeout"/>.
    /// <paramref name="ownedServer"/> (rank 0's store) is disposed with the communicator.
    /// </summary>
    public static HostRingCommunicator Create(Device dev, RendezvousClient? store, int rank, int worldSize, TimeSpan timeout,
        int sliceBytes = DefaultSliceBytes, IDisposable? ownedServer = null)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (worldSize < 1 || rank < 0 || rank >= worldSize)
        {
            throw new ArgumentException($"rank {rank} of world size {worldSize} is not a valid position.");
        }
        if (worldSize == 1)
        {
            return new HostRingCommunicator(dev, store, ownedServer, 0, 1, null, timeout, sliceBytes);
        }
        if (store is null)
        {
            throw new ArgumentException($"a world of {worldSize} ranks needs the rendezvous store to find its peers.", nameof(store));
        }
        (RingLink toRight, RingLink fromLeft) = RingSetup.Connect(store, rank, worldSize, timeout);
        var ring = new RingTransport(toRight, fromLeft, rank, timeout);
        return new HostRingCommunicator(dev, store, ownedServer, rank, worldSize, ring, timeout, sliceBytes);
    }

    // ---- the public collectives: validate on the caller's thread, run on the communicator's ----

    public CommWork AllReduce(ArrayView<float> buffer, ReduceOp op = ReduceOp.Sum)
        => Enqueue("all_reduce", RingOpKind.AllReduce, buffer.Length, -1,
            (clock, work) => RunAllReduce(buffer, op, writeBack: true, clock, work));

    public CommWork AllReduce16(ArrayView<ushort> buffer, Engine.Kernels.Float16Format format)
    {
        if (buffer.Length % 2 != 0) throw new ArgumentException($"AllReduce16: the length must be even, got {buffer.Length} 16-bit values.");
        // Two 16-bit values per float slot: the float schedule moves them, the reduce adds them as 16-bit floats.
        ArrayView<float> packed = buffer.Cast<float>();
        return Enqueue($"all_reduce_{format.ToString().ToLowerInvariant()}", format == Engine.Kernels.Float16Format.Fp16 ? RingOpKind.AllReduceFp16 : RingOpKind.AllReduceBf16,
            packed.Length, -1, (clock, work) => RunAllReduce(packed, ReduceOp.Sum, writeBack: true, clock, work, format));
    }

    public CommWork Reduce(ArrayView<float> buffer, int root, ReduceOp op = ReduceOp.Sum)
    {
        CheckRoot(root, "reduce");
        return Enqueue("reduce", RingOpKind.Reduce, buffer.Length, root,
            (clock, work) => RunAllReduce(buffer, op, writeBack: Rank == root, clock, work));
    }

    public CommWork Broadcast(ArrayView<float> buffer, int root)
    {
        CheckRoot(root, "broadcast");
        return Enqueue("broadcast", RingOpKind.Broadcast, buffer.Length, root, (clock, work) => RunBroadcast(buffer, root, clock, work));
    }

    public CommWork AllGather(ArrayView<float> input, ArrayView<float> output)
    {
        if (output.Length != input.Length * WorldSize)
        {
            throw new ArgumentException($"all_gather: output has {output.Length} elements; it needs world size {WorldSize} x input {input.Length} = {input.Length * WorldSize}.");
        }
        return Enqueue("all_gather", RingOpKind.AllGather, input.Length, -1, (clock, work) => RunAllGather(input, output, clock, work));
    }

    public CommWork ReduceScatter(ArrayView<float> input, ArrayView<float> output, ReduceOp op = ReduceOp.Sum)
    {
        if (input.Length != output.Length * WorldSize)
        {
            throw new ArgumentException($"reduce_scatter: input has {input.Length} elements; it needs world size {WorldSize} x output {output.Length} = {output.Length * WorldSize}.");
        }
        return Enqueue("reduce_scatter", RingOpKind.ReduceScatter, output.Length, -1, (clock, work) => RunReduceScatter(input, output, op, clock, work));
    }

    public CommWork Barrier() => Enqueue("barrier", RingOpKind.Barrier, 0, -1, RunBarrier);

    /// <summary>
    /// One-way bandwidth from rank 0 to rank 1 over the same sockets the ring uses (bytes per second):
    /// the ceiling a ring step can reach. Every rank must call it; ranks other than 0 and 1 only wait.
    /// </summary>
    public double PointToPointBandwidth(long bytes, int iterations)
    {
        double result = 0;
        Enqueue("p2p_bandwidth", RingOpKind.PointToPoint, bytes, iterations, (clock, work) =>
        {
            if (Rank <= 1)
            {
                result = _ring!.PointToPoint(Rank, WorldSize, bytes, iterations, _sliceElements * sizeof(float), clock, work);
            }
        }).Wait();
        return result;
    }

    private void CheckRoot(int root, string op)
    {
        if (root < 0 || root >= WorldSize)
        {
            throw new ArgumentOutOfRangeException(nameof(root), $"{op}: root {root} is outside 0..{WorldSize - 1}.");
        }
    }

    /// <summary>Queues an operation; with neighbours, it starts by exchanging its header with them.</summary>
    private CommWork Enqueue(string op, RingOpKind kind, long count, int root, Action<Stopwatch, CommWork> body)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var header = new RingOpHeader(kind, ++_sequence, count, root);
        return _queue.Post(op, count, _timeout, (clock, work) =>
        {
            if (_ring is not null)
            {
                ExchangeHeader(header, op, clock, work);
            }
            body(clock, work);
        });
    }

    private void ExchangeHeader(RingOpHeader mine, string op, Stopwatch clock, CommWork work)
    {
        Span<byte> ours = stackalloc byte[RingOpHeader.Bytes];
        Span<byte> theirs = stackalloc byte[RingOpHeader.Bytes];
        mine.Write(ours);
        _ring!.Exchange(ours, theirs, op, clock, work);
        if (!ours.SequenceEqual(theirs))
        {
            throw new CommException(op, _ring.Left, clock.Elapsed, mine.Mismatch(op, Rank, _ring.Left, RingOpHeader.Read(theirs)));
        }
    }

    // ---- the operations (on the communicator's thread): stage, run the schedule, copy back ----

    private unsafe void RunAllReduce(ArrayView<float> buffer, ReduceOp op, bool writeBack, Stopwatch clock, CommWork work, Engine.Kernels.Float16Format? packed = null)
    {
        long len = buffer.Length;
        if (len == 0)
        {
            return;
        }
        float* data = _staging.Stage(len);
        _staging.CopyToHost(buffer, data);
        RunSchedule(data, RingSchedule.AllReduce(Rank, WorldSize, len, op, _sliceElements), "all_reduce", clock, work, packed);
        if (writeBack)
        {
            _staging.CopyToDevice(data, buffer);
        }
    }

    private unsafe void RunReduceScatter(ArrayView<float> input, ArrayView<float> output, ReduceOp op, Stopwatch clock, CommWork work)
    {
        long c = output.Length;
        if (c == 0)
        {
            return;
        }
        float* data = _staging.Stage(input.Length);
        _staging.CopyToHost(input, data);
        RunSchedule(data, RingSchedule.ReduceScatter(Rank, WorldSize, c, op, _sliceElements), "reduce_scatter", clock, work);
        _staging.CopyToDevice(data + Rank * c, output);
    }

    private unsafe void RunAllGather(ArrayView<float> input, ArrayView<float> output, Stopwatch clock, CommWork work)
    {
        long c = input.Length;
        if (c == 0)
        {
            return;
        }
        float* data = _staging.Stage(output.Length);
        _staging.CopyToHost(input, data + Rank * c);
        RunSchedule(data, RingSchedule.AllGather(Rank, WorldSize, c, _sliceElements), "all_gather", clock, work);
        _staging.CopyToDevice(data, output);
    }

    private unsafe void RunBarrier(Stopwatch clock, CommWork work)
    {
        // An all-gather of one value per rank: rank r can only finish once every rank has started.
        float* tokens = stackalloc float[WorldSize];
        tokens[Rank] = Rank;
        RunSchedule(tokens, RingSchedule.AllGather(Rank, WorldSize, 1, _sliceElements), "barrier", clock, work);
    }

    private unsafe void RunBroadcast(ArrayView<float> buffer, int root, Stopwatch clock, CommWork work)
    {
        long len = buffer.Length;
        if (len == 0 || WorldSize == 1)
        {
            return;
        }
        float* data = _staging.Stage(len);
        if (Rank == root)
        {
            _staging.CopyToHost(buffer, data);
        }
        RunSchedule(data, RingSchedule.Broadcast(Rank, WorldSize, root, len, _sliceElements), "broadcast", clock, work);
        if (Rank != root)
        {
            _staging.CopyToDevice(data, buffer);
        }
    }

    private unsafe void RunSchedule(float* data, RingSchedule schedule, string op, Stopwatch clock, CommWork work, Engine.Kernels.Float16Format? packed = null)
    {
        if (_ring is not null)
        {
            _ring.Run(data, schedule, op, clock, work, packed);
        }
    }

    /// <summary>Closes the ring first (so neighbours fail now, not at their timeout), then tells the job's story.</summary>
    private CommException Diagnose(string op, Exception e, TimeSpan elapsed)
    {
        _ring?.Abort();
        return _diagnosis.Diagnose(op, e, elapsed, _queue.Broken);
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _queue.Dispose();
        _ring?.Dispose();
        _staging.Dispose();
        _store?.Dispose();
        _ownedServer?.Dispose();
    }
}
