using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Comm;

/// <summary>
/// The CPU backend, and the one for ranks that share a GPU: collectives over a ring of TCP
/// connections (each rank sends to rank+1 and receives from rank-1), device buffers staged through
/// pinned host memory, reductions done on the host with SIMD.
/// </summary>
/// <remarks>
/// All-reduce is NCCL's and Gloo's ring: a reduce-scatter (n-1 steps; after step s rank r holds the
/// partial sum of segment r-s-1 over s+2 ranks) then an all-gather (n-1 steps passing each fully
/// reduced segment on). Each segment travels in slices, and a slice is sent on as soon as it has been
/// received and reduced, so sending, receiving and reducing overlap along the whole ring. Every rank
/// sends 2(n-1)/n of the buffer, the least any all-reduce can, which is why busbw = algbw * 2(n-1)/n
/// is compared with the link bandwidth. Each segment is reduced by exactly one rank, in ring order,
/// and then copied, so every rank ends with bit-identical results.
/// </remarks>
public sealed class HostRingCommunicator : ICommunicator
{
    /// <summary>Bytes per pipelined slice: large enough to amortise a system call, small enough to keep every link busy.</summary>
    public const int DefaultSliceBytes = 512 << 10;

    private const uint RingMagic = 0x474E4952; // "RING"
    private const int HeaderBytes = 32;

    private readonly Device _dev;
    private readonly RendezvousClient? _store;
    private readonly IDisposable? _ownedServer;
    private readonly RingLink? _toRight;
    private readonly RingLink? _fromLeft;
    private readonly AcceleratorStream _stream;
    private readonly SerialWorker _worker;
    private readonly SerialWorker _sender;
    private readonly int _sliceElements;
    private readonly float[] _scratch;
    private PageLockedArray1D<float>? _staging;
    private TimeSpan _timeout;
    private volatile CommException? _broken;
    private long _sequence;
    private bool _disposed;

    public int Rank { get; }

    public int WorldSize { get; }

    public string Backend => "host";

    private int Left => (Rank - 1 + WorldSize) % WorldSize;

    private int Right => (Rank + 1) % WorldSize;

    public TimeSpan Timeout
    {
        get => _timeout;
        set
        {
            _timeout = value;
            _toRight?.SetTimeout(value);
            _fromLeft?.SetTimeout(value);
            if (_store is not null)
            {
                _store.Timeout = value;
            }
        }
    }

    private HostRingCommunicator(Device dev, RendezvousClient? store, IDisposable? ownedServer, int rank, int worldSize,
        RingLink? toRight, RingLink? fromLeft, TimeSpan timeout, int sliceBytes)
    {
        _dev = dev;
        _store = store;
        _ownedServer = ownedServer;
        Rank = rank;
        WorldSize = worldSize;
        _toRight = toRight;
        _fromLeft = fromLeft;
        _timeout = timeout;
        _sliceElements = Math.Max(1, sliceBytes / sizeof(float));
        _scratch = new float[_sliceElements];
        _stream = dev.Accelerator.CreateStream();
        // The communicator's thread issues device copies, so it must have the accelerator's context bound.
        _worker = new SerialWorker($"comm-host-rank{rank}", () => dev.Accelerator.Bind());
        _sender = new SerialWorker($"comm-host-send-rank{rank}");
    }

    /// <summary>
    /// Builds the ring: each rank listens on an ephemeral port of the address it reaches the store from,
    /// publishes it, connects to its right neighbour and accepts its left one. Bounded by
    /// <paramref name="timeout"/>. <paramref name="ownedServer"/> (rank 0's store) is disposed with the
    /// communicator.
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
            return new HostRingCommunicator(dev, store, ownedServer, 0, 1, null, null, timeout, sliceBytes);
        }
        if (store is null)
        {
            throw new ArgumentException($"a world of {worldSize} ranks needs the rendezvous store to find its peers.", nameof(store));
        }
        (RingLink toRight, RingLink fromLeft) = ConnectRing(store, rank, worldSize, timeout);
        return new HostRingCommunicator(dev, store, ownedServer, rank, worldSize, toRight, fromLeft, timeout, sliceBytes);
    }

    private static (RingLink, RingLink) ConnectRing(RendezvousClient store, int rank, int n, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        int right = (rank + 1) % n, left = (rank - 1 + n) % n;
        IPAddress local = store.LocalAddress;
        using var listener = new Socket(local.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(local, 0));
        listener.Listen(16);
        var ep = (IPEndPoint)listener.LocalEndPoint!;

        if (rank == 0)
        {
            store.Set("ring/session", BitConverter.GetBytes(Random.Shared.NextInt64()));
        }
        long session = BitConverter.ToInt64(store.Get("ring/session", timeout));
        store.Set($"ring/addr/{rank}", $"{ep.Address}|{ep.Port}");
        string[] peer = store.GetString($"ring/addr/{right}", timeout - clock.Elapsed).Split('|');
        var rightEp = new IPEndPoint(IPAddress.Parse(peer[0]), int.Parse(peer[1]));

        Socket? outgoing = null;
        Socket? incoming = null;
        try
        {
            outgoing = ConnectWithRetry(rightEp, right, timeout, clock);
            var hello = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(hello, RingMagic);
            BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(4), rank);
            BinaryPrimitives.WriteInt64LittleEndian(hello.AsSpan(8), session);
            outgoing.SendTimeout = (int)Math.Max(1, (timeout - clock.Elapsed).TotalMilliseconds);
            outgoing.Send(hello);
            incoming = AcceptFrom(listener, left, session, timeout, clock);
            return (new RingLink(outgoing, right, timeout), new RingLink(incoming, left, timeout));
        }
        catch
        {
            outgoing?.Dispose();
            incoming?.Dispose();
            throw;
        }
    }

    private static Socket ConnectWithRetry(IPEndPoint ep, int peer, TimeSpan timeout, Stopwatch clock)
    {
        while (true)
        {
            var s = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            TimeSpan left = timeout - clock.Elapsed;
            try
            {
                using var cts = new CancellationTokenSource(left > TimeSpan.Zero ? left : TimeSpan.FromMilliseconds(1));
                s.ConnectAsync(ep, cts.Token).AsTask().GetAwaiter().GetResult();
                return s;
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                s.Dispose();
                if (clock.Elapsed >= timeout)
                {
                    throw new CommTimeoutException("rendezvous", peer, clock.Elapsed,
                        $"rendezvous: could not connect to rank {peer} at {ep} within {timeout.TotalSeconds:F1} s ({e.Message}).", e);
                }
                Thread.Sleep(50);
            }
        }
    }

    /// <summary>Accepts until the left neighbour of this session says hello; strays are closed and ignored.</summary>
    private static Socket AcceptFrom(Socket listener, int left, long session, TimeSpan timeout, Stopwatch clock)
    {
        while (true)
        {
            TimeSpan remaining = timeout - clock.Elapsed;
            if (remaining <= TimeSpan.Zero)
            {
                throw new CommTimeoutException("rendezvous", left, clock.Elapsed,
                    $"rendezvous: rank {left} did not connect within {timeout.TotalSeconds:F1} s.");
            }
            Socket s;
            try
            {
                using var cts = new CancellationTokenSource(remaining);
                s = listener.AcceptAsync(cts.Token).AsTask().GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                continue;
            }
            try
            {
                s.ReceiveTimeout = (int)Math.Clamp((timeout - clock.Elapsed).TotalMilliseconds, 1, 10_000);
                var hello = new byte[16];
                int got = 0;
                while (got < hello.Length)
                {
                    int k = s.Receive(hello.AsSpan(got));
                    if (k == 0)
                    {
                        break;
                    }
                    got += k;
                }
                if (got == hello.Length && BinaryPrimitives.ReadUInt32LittleEndian(hello) == RingMagic
                    && BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(4)) == left
                    && BinaryPrimitives.ReadInt64LittleEndian(hello.AsSpan(8)) == session)
                {
                    return s;
                }
            }
            catch (SocketException)
            {
            }
            s.Dispose();
        }
    }

    // ---- the public collectives: validate on the caller's thread, run on the communicator's ----

    public CommWork AllReduce(ArrayView<float> buffer, ReduceOp op = ReduceOp.Sum)
        => Enqueue("all_reduce", OpKind.AllReduce, buffer.Length, -1, (clock, work) => RunAllReduce(buffer, op, writeBack: true, clock, work));

    public CommWork Reduce(ArrayView<float> buffer, int root, ReduceOp op = ReduceOp.Sum)
    {
        CheckRoot(root, "reduce");
        return Enqueue("reduce", OpKind.Reduce, buffer.Length, root, (clock, work) => RunAllReduce(buffer, op, writeBack: Rank == root, clock, work));
    }

    public CommWork Broadcast(ArrayView<float> buffer, int root)
    {
        CheckRoot(root, "broadcast");
        return Enqueue("broadcast", OpKind.Broadcast, buffer.Length, root, (clock, work) => RunBroadcast(buffer, root, clock, work));
    }

    public CommWork AllGather(ArrayView<float> input, ArrayView<float> output)
    {
        if (output.Length != input.Length * WorldSize)
        {
            throw new ArgumentException($"all_gather: output has {output.Length} elements; it needs world size {WorldSize} x input {input.Length} = {input.Length * WorldSize}.");
        }
        return Enqueue("all_gather", OpKind.AllGather, input.Length, -1, (clock, work) => RunAllGather(input, output, clock, work));
    }

    public CommWork ReduceScatter(ArrayView<float> input, ArrayView<float> output, ReduceOp op = ReduceOp.Sum)
    {
        if (input.Length != output.Length * WorldSize)
        {
            throw new ArgumentException($"reduce_scatter: input has {input.Length} elements; it needs world size {WorldSize} x output {output.Length} = {output.Length * WorldSize}.");
        }
        return Enqueue("reduce_scatter", OpKind.ReduceScatter, output.Length, -1, (clock, work) => RunReduceScatter(input, output, op, clock, work));
    }

    public CommWork Barrier() => Enqueue("barrier", OpKind.Barrier, 0, -1, RunBarrier);

    /// <summary>
    /// One-way bandwidth from rank 0 to rank 1 over the same sockets the ring uses (bytes per second):
    /// the ceiling a ring step can reach. Every rank must call it; ranks other than 0 and 1 only wait.
    /// </summary>
    public double PointToPointBandwidth(long bytes, int iterations)
    {
        double result = 0;
        Enqueue("p2p_bandwidth", OpKind.PointToPoint, bytes, iterations, (clock, work) =>
        {
            if (Rank > 1)
            {
                return;
            }
            var buffer = new byte[Math.Max(1, Math.Min(bytes, _sliceElements * (long)sizeof(float)))];
            var ack = new byte[1];
            var timer = Stopwatch.StartNew();
            for (int it = 0; it < iterations; it++)
            {
                long left = bytes;
                while (left > 0)
                {
                    int n = (int)Math.Min(left, buffer.Length);
                    if (Rank == 0)
                    {
                        work.SetWaitingOn(1);
                        _toRight!.Send(buffer.AsSpan(0, n), "p2p_bandwidth", clock);
                    }
                    else
                    {
                        work.SetWaitingOn(0);
                        _fromLeft!.Receive(buffer.AsSpan(0, n), "p2p_bandwidth", clock);
                    }
                    left -= n;
                }
                // Rank 1 acknowledges each message (over its own ring link, which for 2 ranks leads back to 0;
                // for more ranks the ack goes around the ring, which is why only the send is timed on rank 1).
                if (WorldSize == 2)
                {
                    if (Rank == 1)
                    {
                        _toRight!.Send(ack, "p2p_bandwidth", clock);
                    }
                    else
                    {
                        _fromLeft!.Receive(ack, "p2p_bandwidth", clock);
                    }
                }
            }
            result = bytes * (double)iterations / timer.Elapsed.TotalSeconds;
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

    private enum OpKind
    {
        AllReduce = 1,
        Reduce,
        Broadcast,
        AllGather,
        ReduceScatter,
        Barrier,
        PointToPoint,
    }

    private CommWork Enqueue(string op, OpKind kind, long count, int root, Action<Stopwatch, CommWork> body)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var work = new CommWork(op, count, _timeout);
        if (_broken is { } broken)
        {
            work.Fail(new CommException(op, broken.PeerRank, TimeSpan.Zero,
                $"{op} on rank {Rank} refused: an earlier collective failed and the communicator is broken: {broken.Message}", broken) { LostRank = broken.LostRank });
            return work;
        }
        ProfilingMarker? ready = CaptureStreamPoint();
        long sequence = ++_sequence;
        _worker.Post(() =>
        {
            var clock = Stopwatch.StartNew();
            try
            {
                if (_broken is { } b)
                {
                    throw new CommException(op, b.PeerRank, TimeSpan.Zero, $"{op} on rank {Rank} refused: the communicator is broken: {b.Message}", b) { LostRank = b.LostRank };
                }
                WaitForStreamPoint(ready);
                work.MarkStarted();
                if (WorldSize > 1)
                {
                    ExchangeHeader(kind, sequence, count, root, op, clock, work);
                }
                body(clock, work);
                work.Complete();
            }
            catch (Exception e)
            {
                work.Fail(Diagnose(op, e, clock));
            }
            finally
            {
                ready?.Dispose();
            }
        });
        return work;
    }

    /// <summary>Marks where the caller's stream is, so the operation reads its input only after the kernels that wrote it.</summary>
    private ProfilingMarker? CaptureStreamPoint()
    {
        try
        {
            return _dev.Stream.AddProfilingMarker();
        }
        catch (NotSupportedException)
        {
            // A context without profiling: fall back to waiting here, on the caller's thread.
            _dev.Stream.Synchronize();
            return null;
        }
    }

    /// <remarks>
    /// Not bounded by the timeout: the kernels before the call are this rank's own and do not wait on
    /// peers. (ILGPU keeps the CUDA event of a marker internal, so there is no event query to poll.)
    /// </remarks>
    private static void WaitForStreamPoint(ProfilingMarker? marker) => marker?.Synchronize();

    /// <summary>Both neighbours must be in the same collective with the same size, or the ring's byte counts would silently disagree.</summary>
    private void ExchangeHeader(OpKind kind, long sequence, long count, int root, string op, Stopwatch clock, CommWork work)
    {
        Span<byte> mine = stackalloc byte[HeaderBytes];
        Span<byte> theirs = stackalloc byte[HeaderBytes];
        mine.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(mine, RingMagic);
        BinaryPrimitives.WriteInt32LittleEndian(mine[4..], (int)kind);
        BinaryPrimitives.WriteInt64LittleEndian(mine[8..], sequence);
        BinaryPrimitives.WriteInt64LittleEndian(mine[16..], count);
        BinaryPrimitives.WriteInt32LittleEndian(mine[24..], root);
        work.SetWaitingOn(Right);
        _toRight!.Send(mine, op, clock);
        work.SetWaitingOn(Left);
        _fromLeft!.Receive(theirs, op, clock);
        if (!mine.SequenceEqual(theirs))
        {
            var k = (OpKind)BinaryPrimitives.ReadInt32LittleEndian(theirs[4..]);
            throw new CommException(op, Left, clock.Elapsed,
                $"{op}: rank {Left} issued collective #{BinaryPrimitives.ReadInt64LittleEndian(theirs[8..])} as {k} of {BinaryPrimitives.ReadInt64LittleEndian(theirs[16..])} elements (root {BinaryPrimitives.ReadInt32LittleEndian(theirs[24..])}), " +
                $"while rank {Rank} issued #{sequence} as {kind} of {count} elements (root {root}): every rank must call the same collectives, in the same order, with the same sizes.");
        }
    }

    // ---- the algorithms (on the communicator's thread) ----

    private unsafe void RunAllReduce(ArrayView<float> buffer, ReduceOp op, bool writeBack, Stopwatch clock, CommWork work)
    {
        long len = buffer.Length;
        if (len == 0)
        {
            return;
        }
        float* data = Stage(len);
        CopyToHost(buffer, data);
        int n = WorldSize, r = Rank;
        if (n > 1)
        {
            Block Seg(int i) { i = ((i % n) + n) % n; long a = len * i / n, b = len * (i + 1) / n; return new Block(a, b - a); }
            var sends = new Block[2 * (n - 1)];
            var recvs = new Block[2 * (n - 1)];
            var actions = new Recv[2 * (n - 1)];
            for (int s = 0; s < n - 1; s++)
            {
                sends[s] = Seg(r - s);
                recvs[s] = Seg(r - s - 1);
                actions[s] = s == n - 2 && op == ReduceOp.Avg ? Recv.ReduceAndAverage : Recv.Reduce;
                sends[n - 1 + s] = Seg(r + 1 - s);
                recvs[n - 1 + s] = Seg(r - s);
                actions[n - 1 + s] = Recv.Copy;
            }
            RunRing(data, sends, recvs, actions, "all_reduce", clock, work);
        }
        if (writeBack)
        {
            CopyToDevice(data, buffer);
        }
    }

    private unsafe void RunReduceScatter(ArrayView<float> input, ArrayView<float> output, ReduceOp op, Stopwatch clock, CommWork work)
    {
        long c = output.Length;
        if (c == 0)
        {
            return;
        }
        int n = WorldSize, r = Rank;
        float* data = Stage(input.Length);
        CopyToHost(input, data);
        if (n > 1)
        {
            Block Blk(int i) => new(((i % n + n) % n) * c, c);
            var sends = new Block[n - 1];
            var recvs = new Block[n - 1];
            var actions = new Recv[n - 1];
            for (int s = 0; s < n - 1; s++)
            {
                sends[s] = Blk(r - s - 1);
                recvs[s] = Blk(r - s - 2);
                actions[s] = s == n - 2 && op == ReduceOp.Avg ? Recv.ReduceAndAverage : Recv.Reduce;
            }
            RunRing(data, sends, recvs, actions, "reduce_scatter", clock, work);
        }
        CopyToDevice(data + r * c, output);
    }

    private unsafe void RunAllGather(ArrayView<float> input, ArrayView<float> output, Stopwatch clock, CommWork work)
    {
        long c = input.Length;
        if (c == 0)
        {
            return;
        }
        int n = WorldSize, r = Rank;
        float* data = Stage(output.Length);
        CopyToHost(input, data + r * c);
        if (n > 1)
        {
            GatherRing(data, c, "all_gather", clock, work);
        }
        CopyToDevice(data, output);
    }

    private unsafe void GatherRing(float* data, long c, string op, Stopwatch clock, CommWork work)
    {
        int n = WorldSize, r = Rank;
        Block Blk(int i) => new(((i % n + n) % n) * c, c);
        var sends = new Block[n - 1];
        var recvs = new Block[n - 1];
        var actions = new Recv[n - 1];
        for (int s = 0; s < n - 1; s++)
        {
            sends[s] = Blk(r - s);
            recvs[s] = Blk(r - s - 1);
            actions[s] = Recv.Copy;
        }
        RunRing(data, sends, recvs, actions, op, clock, work);
    }

    private unsafe void RunBarrier(Stopwatch clock, CommWork work)
    {
        if (WorldSize == 1)
        {
            return;
        }
        // An all-gather of one value per rank: rank r can only finish once every rank has started.
        float* tokens = stackalloc float[WorldSize];
        tokens[Rank] = Rank;
        GatherRing(tokens, 1, "barrier", clock, work);
    }

    private unsafe void RunBroadcast(ArrayView<float> buffer, int root, Stopwatch clock, CommWork work)
    {
        long len = buffer.Length;
        if (len == 0 || WorldSize == 1)
        {
            return;
        }
        // A pipelined chain root -> root+1 -> ... -> root-1: each rank forwards a slice as soon as it has it.
        float* data = Stage(len);
        bool forward = Right != root;
        if (Rank == root)
        {
            CopyToHost(buffer, data);
        }
        for (long off = 0; off < len; off += _sliceElements)
        {
            var slice = new Span<byte>(data + off, (int)Math.Min(_sliceElements, len - off) * sizeof(float));
            if (Rank != root)
            {
                work.SetWaitingOn(Left);
                _fromLeft!.Receive(slice, "broadcast", clock);
            }
            if (forward)
            {
                work.SetWaitingOn(Right);
                _toRight!.Send(slice, "broadcast", clock);
            }
        }
        if (Rank != root)
        {
            CopyToDevice(data, buffer);
        }
    }

    private readonly record struct Block(long Offset, long Length);

    private enum Recv
    {
        Reduce,
        ReduceAndAverage,
        Copy,
    }

    /// <summary>
    /// Runs a ring schedule: send block j to the right while receiving block j from the left. Send
    /// block j (j &gt; 0) is the block received at step j-1, so its slice k goes out as soon as slice k
    /// of that receive is done: the sending thread follows the receiving one slice by slice.
    /// </summary>
    private unsafe void RunRing(float* data, Block[] sends, Block[] recvs, Recv[] actions, string op, Stopwatch clock, CommWork work)
    {
        int blocks = sends.Length;
        var recvSlicesBefore = new long[blocks + 1];
        for (int j = 0; j < blocks; j++)
        {
            recvSlicesBefore[j + 1] = recvSlicesBefore[j] + Slices(recvs[j].Length);
        }
        var progress = new RingProgress();
        nint basePtr = (nint)data;
        Task sending = _sender.Post(() => SendBlocks(basePtr, sends, recvSlicesBefore, progress, op, clock));
        try
        {
            for (int j = 0; j < blocks; j++)
            {
                Block b = recvs[j];
                for (long off = 0; off < b.Length; off += _sliceElements)
                {
                    int count = (int)Math.Min(_sliceElements, b.Length - off);
                    var dst = new Span<float>(data + b.Offset + off, count);
                    work.SetWaitingOn(Left);
                    if (actions[j] == Recv.Copy)
                    {
                        _fromLeft!.Receive(MemoryMarshal.AsBytes(dst), op, clock);
                    }
                    else
                    {
                        Span<float> incoming = _scratch.AsSpan(0, count);
                        _fromLeft!.Receive(MemoryMarshal.AsBytes(incoming), op, clock);
                        HostMath.Add(dst, incoming);
                        if (actions[j] == Recv.ReduceAndAverage)
                        {
                            HostMath.Divide(dst, WorldSize);
                        }
                    }
                    progress.Advance();
                }
            }
        }
        catch (Exception e)
        {
            progress.Fail(e);
            AbortLinks();
            WaitQuietly(sending);
            throw progress.FirstError!;
        }
        work.SetWaitingOn(Right);
        if (!sending.Wait(_timeout + TimeSpan.FromSeconds(1)))
        {
            throw new CommTimeoutException(op, Right, clock.Elapsed, $"{op}: sending to rank {Right} did not finish within {_timeout.TotalSeconds:F1} s.");
        }
        if (progress.FirstError is { } failed)
        {
            throw failed;
        }
    }

    private unsafe void SendBlocks(nint basePtr, Block[] sends, long[] recvSlicesBefore, RingProgress progress, string op, Stopwatch clock)
    {
        float* data = (float*)basePtr;
        try
        {
            for (int j = 0; j < sends.Length; j++)
            {
                Block b = sends[j];
                long k = 0;
                for (long off = 0; off < b.Length; off += _sliceElements, k++)
                {
                    if (j > 0 && !progress.WaitFor(recvSlicesBefore[j - 1] + k + 1, _timeout + TimeSpan.FromSeconds(1)))
                    {
                        return; // the receiving side failed (or stalled past its own timeout) and reports it
                    }
                    int count = (int)Math.Min(_sliceElements, b.Length - off);
                    _toRight!.Send(new ReadOnlySpan<byte>(data + b.Offset + off, count * sizeof(float)), op, clock);
                }
            }
        }
        catch (Exception e)
        {
            progress.Fail(e);
            AbortLinks(); // unblock the receiving side, which then reports this error
        }
    }

    private long Slices(long length) => (length + _sliceElements - 1) / _sliceElements;

    private static void WaitQuietly(Task t)
    {
        try
        {
            t.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
    }

    /// <summary>Slices received so far, shared by the receiving and sending threads; the first error wins.</summary>
    private sealed class RingProgress
    {
        private readonly object _gate = new();
        private long _done;

        public Exception? FirstError { get; private set; }

        public void Advance()
        {
            lock (_gate)
            {
                _done++;
                Monitor.PulseAll(_gate);
            }
        }

        public void Fail(Exception e)
        {
            lock (_gate)
            {
                FirstError ??= e;
                Monitor.PulseAll(_gate);
            }
        }

        /// <summary>False if the ring failed, or the target was not reached in time.</summary>
        public bool WaitFor(long target, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            lock (_gate)
            {
                while (_done < target && FirstError is null)
                {
                    TimeSpan left = timeout - clock.Elapsed;
                    if (left <= TimeSpan.Zero || !Monitor.Wait(_gate, left))
                    {
                        return _done >= target && FirstError is null;
                    }
                }
                return FirstError is null;
            }
        }
    }

    // ---- staging between the device and pinned host memory ----

    private unsafe float* Stage(long elements)
    {
        if (_staging is null || _staging.Length < elements)
        {
            _staging?.Dispose();
            _staging = _dev.Accelerator.AllocatePageLocked1D<float>(Math.Max(elements, 1024), true);
        }
        return (float*)Unsafe.AsPointer(ref _staging[0]);
    }

    private unsafe void CopyToHost(ArrayView<float> view, float* host)
    {
        if (view.Length == 0)
        {
            return;
        }
        ArrayView1D<float, Stride1D.Dense> v = view;
        v.CopyToCPU(_stream, ref Unsafe.AsRef<float>(host), view.Length);
        _stream.Synchronize();
    }

    private unsafe void CopyToDevice(float* host, ArrayView<float> view)
    {
        if (view.Length == 0)
        {
            return;
        }
        ArrayView1D<float, Stride1D.Dense> v = view;
        v.CopyFromCPU(_stream, ref Unsafe.AsRef<float>(host), view.Length);
        _stream.Synchronize();
    }

    // ---- failure handling ----

    private void AbortLinks()
    {
        _toRight?.Abort();
        _fromLeft?.Abort();
    }

    /// <summary>
    /// Turns a local failure into the job-level story: close the ring (so neighbours fail now, not at
    /// their timeout), then ask the store which rank was lost first, so that every survivor names it.
    /// </summary>
    /// <summary>
    /// Publishes "this rank waits on <paramref name="peer"/>" and follows the other ranks' such records
    /// (each given a short grace to appear, as their timeouts fire at about the same moment) to the rank
    /// that waits on nobody: the one that stalled. A cycle means no rank can be singled out; then the peer.
    /// </summary>
    private int FollowWaits(int peer)
    {
        _store!.Set($"comm/waits/{Rank}", peer.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var seen = new HashSet<int> { Rank };
        int r = peer;
        while (seen.Add(r))
        {
            try
            {
                r = int.Parse(_store.GetString($"comm/waits/{r}", TimeSpan.FromSeconds(1)), System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (CommTimeoutException)
            {
                return r;
            }
        }
        return peer;
    }

    private CommException Diagnose(string op, Exception e, Stopwatch clock)
    {
        CommException local = e as CommException
            ?? new CommException(op, null, clock.Elapsed, $"{op} on rank {Rank} failed after {clock.Elapsed.TotalSeconds:F2} s: {e.Message}", e);
        if (_broken is not null && ReferenceEquals(local.InnerException, _broken))
        {
            return local;
        }
        AbortLinks();
        int? lost = local.LostRank;
        string? jobReason = null;
        if (_store is not null && lost is null)
        {
            try
            {
                if (local is CommTimeoutException && local.PeerRank is int hung
                    && _store.TryGetFailure(TimeSpan.FromMilliseconds(200)) is null)
                {
                    // The peer this rank timed out on may itself be waiting on another rank: blame the end of the wait chain.
                    int culprit = FollowWaits(hung);
                    _store.ReportFailure(culprit, culprit == hung
                        ? $"rank {hung} stopped responding during {op} (rank {Rank} timed out waiting on it)"
                        : $"rank {culprit} stopped responding during {op} (rank {Rank} timed out waiting on rank {hung}, which was waiting on it in turn)");
                }
                // A dead process's store connection drops at once, so the store usually knows who died.
                if (_store.TryGetFailure(TimeSpan.FromSeconds(2)) is { } f)
                {
                    lost = f.LostRank >= 0 ? f.LostRank : null;
                    jobReason = f.Reason;
                }
                else if (local.PeerRank is int peer)
                {
                    _store.ReportFailure(peer, $"rank {Rank} lost rank {peer} during {op}");
                }
            }
            catch (CommException storeFailure)
            {
                lost = storeFailure.LostRank;
                jobReason = storeFailure.Message;
            }
        }
        string message = lost is int l
            ? $"{op} failed on rank {Rank} after {clock.Elapsed.TotalSeconds:F2} s: {jobReason ?? $"rank {l} was lost"}. This rank saw: {local.Message}"
            : $"{op} failed on rank {Rank}: {local.Message}" + (jobReason is null ? "" : $" The job had failed: {jobReason}.");
        CommException result = local is CommTimeoutException
            ? new CommTimeoutException(op, local.PeerRank, local.Elapsed, message, local) { LostRank = lost }
            : new CommException(op, local.PeerRank, local.Elapsed, message, local) { LostRank = lost };
        _broken ??= result;
        return result;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _worker.Dispose();
        _sender.Dispose();
        _toRight?.Dispose();
        _fromLeft?.Dispose();
        _staging?.Dispose();
        _stream.Dispose();
        _store?.Dispose();
        _ownedServer?.Dispose();
    }
}
