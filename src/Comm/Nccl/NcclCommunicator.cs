using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Device = Engine.Kernels.Device;

namespace Engine.Comm.Nccl;

/// <summary>
/// Collectives through NCCL on the rank's own GPU, on ILGPU buffers. The operations are issued by the
/// communicator's thread, in call order, on a CUDA stream of its own created by ILGPU in ILGPU's
/// context; that thread has ILGPU's context bound, which the CUDA runtime inside NCCL then uses as
/// its current context (see docs/COMM.md for what a GPU run must confirm).
/// </summary>
/// <remarks>
/// A watchdog (PyTorch's ProcessGroupNCCL does the same) checks each operation in flight: when
/// ncclCommGetAsyncError reports an error or the operation outlives the timeout it calls
/// ncclCommAbort, which makes the stuck kernels return, and the operation fails naming itself and
/// the time; NCCL does not say which peer was lost, so the rendezvous store is asked.
/// </remarks>
public sealed class NcclCommunicator : ICommunicator
{
    private readonly Device _dev;
    private readonly RendezvousClient? _store;
    private readonly IDisposable? _ownedServer;
    private readonly AcceleratorStream _stream;
    private readonly nint _streamPtr;
    private readonly SerialWorker _worker;
    private readonly Timer _watchdog;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _barrierBuffer;
    private readonly object _gate = new();
    private nint _comm;
    private long _inFlightSinceTicks; // 0: nothing in flight
    private string? _abortReason;
    private volatile CommException? _broken;
    private bool _disposed;

    public int Rank { get; }

    public int WorldSize { get; }

    public string Backend => "nccl";

    public TimeSpan Timeout { get; set; }

    /// <summary>NCCL's version code, e.g. 22105.</summary>
    public int NcclVersion { get; }

    private NcclCommunicator(Device dev, RendezvousClient? store, IDisposable? ownedServer, int rank, int worldSize, TimeSpan timeout, int version)
    {
        _dev = dev;
        _store = store;
        _ownedServer = ownedServer;
        Rank = rank;
        WorldSize = worldSize;
        Timeout = timeout;
        NcclVersion = version;
        _stream = dev.Accelerator.CreateStream();
        _streamPtr = ((CudaStream)_stream).StreamPtr;
        _barrierBuffer = dev.Allocate<float>(1);
        _worker = new SerialWorker($"comm-nccl-rank{rank}", () => dev.Accelerator.Bind());
        _watchdog = new Timer(_ => Watch(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    /// <summary>
    /// Rank 0 makes the unique id and publishes it in the store; every rank then joins with
    /// ncclCommInitRank on the communicator's thread (ILGPU's context bound). A world of one needs no store.
    /// </summary>
    /// <exception cref="ArgumentException">The device is not a CUDA GPU.</exception>
    /// <exception cref="DllNotFoundException">libnccl.so.2 was not found (the message lists where it looked).</exception>
    public static NcclCommunicator Create(Device dev, RendezvousClient? store, int rank, int worldSize, TimeSpan timeout, IDisposable? ownedServer = null)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (!dev.IsCuda)
        {
            throw new ArgumentException($"the NCCL backend needs a CUDA device, and this rank's device is {dev}. Use --backend host (the TCP ring) on the CPU or when ranks share a GPU.");
        }
        if (worldSize > 1 && store is null)
        {
            throw new ArgumentException($"a world of {worldSize} ranks needs the rendezvous store to share NCCL's unique id.", nameof(store));
        }
        int version = NcclLibrary.Version();
        if (version < 21000)
        {
            throw new NotSupportedException($"NCCL {version} is too old: ncclAvg needs NCCL 2.10 or later.");
        }

        NcclUniqueId id;
        if (rank == 0)
        {
            NcclNative.Check(NcclNative.ncclGetUniqueId(out id), "ncclGetUniqueId");
            store?.Set("nccl/unique_id", id.ToArray());
        }
        else
        {
            id = NcclUniqueId.FromBytes(store!.Get("nccl/unique_id", timeout));
        }

        var comm = new NcclCommunicator(dev, store, ownedServer, rank, worldSize, timeout, version);
        try
        {
            var clock = Stopwatch.StartNew();
            // ncclCommInitRank blocks until every rank has joined: bound it by the timeout.
            Task init = comm._worker.Post(() =>
            {
                NcclNative.Check(NcclNative.ncclCommInitRank(out nint handle, worldSize, id, rank), "ncclCommInitRank");
                comm._comm = handle;
            });
            if (!init.Wait(timeout))
            {
                throw new CommTimeoutException("ncclCommInitRank", null, clock.Elapsed,
                    $"ncclCommInitRank on rank {rank} did not complete within {timeout.TotalSeconds:F1} s: not every rank joined.");
            }
            if (init.Exception is { } e)
            {
                throw e.InnerException!;
            }
            return comm;
        }
        catch
        {
            comm.Dispose();
            throw;
        }
    }

    public CommWork AllReduce(ArrayView<float> buffer, ReduceOp op = ReduceOp.Sum) => AllReduce(buffer, buffer, op);

    /// <summary>Out of place: <paramref name="output"/> receives the reduction of every rank's <paramref name="input"/>.</summary>
    public CommWork AllReduce(ArrayView<float> input, ArrayView<float> output, ReduceOp op = ReduceOp.Sum)
    {
        if (output.Length != input.Length)
        {
            throw new ArgumentException($"all_reduce: output has {output.Length} elements, input {input.Length}.");
        }
        return Enqueue("all_reduce", input.Length, () => NcclNative.Check(NcclNative.ncclAllReduce(Ptr(input), Ptr(output), (nuint)input.Length,
            NcclDataType.Float32, ToNccl(op), _comm, _streamPtr), "ncclAllReduce"));
    }

    public CommWork AllReduce16(ArrayView<ushort> buffer, Engine.Kernels.Float16Format format)
    {
        if (buffer.Length % 2 != 0) throw new ArgumentException($"AllReduce16: the length must be even, got {buffer.Length} 16-bit values.");
        nint ptr = buffer.Length == 0 ? 0 : buffer.LoadEffectiveAddressAsPtr();
        NcclDataType type = format == Engine.Kernels.Float16Format.Fp16 ? NcclDataType.Float16 : NcclDataType.Bfloat16;
        return Enqueue($"all_reduce_{format.ToString().ToLowerInvariant()}", buffer.Length, () => NcclNative.Check(NcclNative.ncclAllReduce(ptr, ptr, (nuint)buffer.Length,
            type, NcclRedOp.Sum, _comm, _streamPtr), "ncclAllReduce"));
    }

    public CommWork Broadcast(ArrayView<float> buffer, int root)
    {
        CheckRoot(root, "broadcast");
        return Enqueue("broadcast", buffer.Length, () => NcclNative.Check(NcclNative.ncclBroadcast(Ptr(buffer), Ptr(buffer), (nuint)buffer.Length,
            NcclDataType.Float32, root, _comm, _streamPtr), "ncclBroadcast"));
    }

    public CommWork Reduce(ArrayView<float> buffer, int root, ReduceOp op = ReduceOp.Sum)
    {
        CheckRoot(root, "reduce");
        return Enqueue("reduce", buffer.Length, () => NcclNative.Check(NcclNative.ncclReduce(Ptr(buffer), Ptr(buffer), (nuint)buffer.Length,
            NcclDataType.Float32, ToNccl(op), root, _comm, _streamPtr), "ncclReduce"));
    }

    public CommWork AllGather(ArrayView<float> input, ArrayView<float> output)
    {
        if (output.Length != input.Length * WorldSize)
        {
            throw new ArgumentException($"all_gather: output has {output.Length} elements; it needs world size {WorldSize} x input {input.Length}.");
        }
        return Enqueue("all_gather", input.Length, () => NcclNative.Check(NcclNative.ncclAllGather(Ptr(input), Ptr(output), (nuint)input.Length,
            NcclDataType.Float32, _comm, _streamPtr), "ncclAllGather"));
    }

    public CommWork ReduceScatter(ArrayView<float> input, ArrayView<float> output, ReduceOp op = ReduceOp.Sum)
    {
        if (input.Length != output.Length * WorldSize)
        {
            throw new ArgumentException($"reduce_scatter: input has {input.Length} elements; it needs world size {WorldSize} x output {output.Length}.");
        }
        return Enqueue("reduce_scatter", output.Length, () => NcclNative.Check(NcclNative.ncclReduceScatter(Ptr(input), Ptr(output), (nuint)output.Length,
            NcclDataType.Float32, ToNccl(op), _comm, _streamPtr), "ncclReduceScatter"));
    }

    /// <summary>A one-element all-reduce: it completes on a rank only once every rank has issued it.</summary>
    public CommWork Barrier()
        => Enqueue("barrier", 1, () => NcclNative.Check(NcclNative.ncclAllReduce(Ptr(_barrierBuffer.View), Ptr(_barrierBuffer.View), 1,
            NcclDataType.Float32, NcclRedOp.Sum, _comm, _streamPtr), "ncclAllReduce(barrier)"));

    private static NcclRedOp ToNccl(ReduceOp op) => op == ReduceOp.Avg ? NcclRedOp.Avg : NcclRedOp.Sum;

    /// <summary>The device address of the view's first element (its buffer's pointer plus its offset).</summary>
    private static nint Ptr(ArrayView<float> view) => view.Length == 0 ? 0 : view.LoadEffectiveAddressAsPtr();

    private void CheckRoot(int root, string op)
    {
        if (root < 0 || root >= WorldSize)
        {
            throw new ArgumentOutOfRangeException(nameof(root), $"{op}: root {root} is outside 0..{WorldSize - 1}.");
        }
    }

    private CommWork Enqueue(string op, long count, Action issue)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var work = new CommWork(op, count, Timeout);
        if (_broken is { } broken)
        {
            work.Fail(new CommException(op, null, TimeSpan.Zero, $"{op} on rank {Rank} refused: the communicator is broken: {broken.Message}", broken) { LostRank = broken.LostRank });
            return work;
        }
        ProfilingMarker ready = _dev.Stream.AddProfilingMarker();
        _worker.Post(() =>
        {
            var clock = Stopwatch.StartNew();
            try
            {
                // The caller's kernels must be done before NCCL reads the buffer. (A device-side wait,
                // cuStreamWaitEvent, would keep the host out of it; ILGPU does not expose its events.)
                ready.Synchronize();
                work.MarkStarted();
                if (count > 0)
                {
                    Interlocked.Exchange(ref _inFlightSinceTicks, Stopwatch.GetTimestamp());
                    issue();
                    _stream.Synchronize();
                    Interlocked.Exchange(ref _inFlightSinceTicks, 0);
                    string? aborted;
                    lock (_gate)
                    {
                        aborted = _abortReason;
                    }
                    if (aborted is not null)
                    {
                        throw new CommTimeoutException(op, null, clock.Elapsed, $"{op} on rank {Rank}: {aborted}");
                    }
                    CheckAsyncError(op);
                }
                work.Complete();
            }
            catch (Exception e)
            {
                Interlocked.Exchange(ref _inFlightSinceTicks, 0);
                work.Fail(Diagnose(op, e, clock.Elapsed));
            }
            finally
            {
                ready.Dispose();
            }
        });
        return work;
    }

    private void CheckAsyncError(string op)
    {
        NcclNative.Check(NcclNative.ncclCommGetAsyncError(_comm, out NcclResult asyncError), "ncclCommGetAsyncError");
        if (asyncError is not NcclResult.Success and not NcclResult.InProgress)
        {
            throw new NcclException(op, asyncError, NcclNative.ErrorString(asyncError));
        }
    }

    /// <summary>Aborts the communicator when the operation in flight has an async error or outlived the timeout.</summary>
    private void Watch()
    {
        long since = Interlocked.Read(ref _inFlightSinceTicks);
        if (since == 0 || _comm == 0)
        {
            return;
        }
        TimeSpan elapsed = Stopwatch.GetElapsedTime(since);
        string? reason = null;
        if (NcclNative.ncclCommGetAsyncError(_comm, out NcclResult asyncError) == NcclResult.Success
            && asyncError is not NcclResult.Success and not NcclResult.InProgress)
        {
            reason = $"NCCL reported an asynchronous error after {elapsed.TotalSeconds:F1} s: {NcclNative.ErrorString(asyncError)}; the communicator was aborted.";
        }
        else if (elapsed > Timeout)
        {
            reason = $"no completion within the {Timeout.TotalSeconds:F1} s timeout ({elapsed.TotalSeconds:F1} s in flight): a peer is lost or hung; the communicator was aborted.";
        }
        if (reason is null)
        {
            return;
        }
        lock (_gate)
        {
            if (_abortReason is not null)
            {
                return;
            }
            _abortReason = reason;
        }
        NcclNative.ncclCommAbort(_comm);
    }

    /// <summary>The job-level story of a failure (the diagnosis every backend shares); the first one breaks the communicator.</summary>
    private CommException Diagnose(string op, Exception e, TimeSpan elapsed)
    {
        CommException result = new FailureDiagnosis(Rank, _store).Diagnose(op, e, elapsed, _broken);
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
        _watchdog.Dispose();
        if (_comm != 0)
        {
            nint handle = _comm;
            bool broken = _broken is not null;
            // Destroy (or abort, after a failure) on the thread that has the context bound.
            _worker.Post(() => _ = broken ? NcclNative.ncclCommAbort(handle) : NcclNative.ncclCommDestroy(handle)).Wait(TimeSpan.FromSeconds(10));
            _comm = 0;
        }
        _worker.Dispose();
        _barrierBuffer.Dispose();
        _stream.Dispose();
        _store?.Dispose();
        _ownedServer?.Dispose();
    }
}
