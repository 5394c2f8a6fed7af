using ILGPU;

namespace Engine.Comm;

/// <summary>
/// Collectives between the ranks of one job, on device buffers of the rank's own
/// <see cref="Engine.Kernels.Device"/>. Every call returns at once with a <see cref="CommWork"/> handle.
/// </summary>
/// <remarks>
/// <para><b>Threading contract.</b> Calls are made from one thread (the training loop's), in the same
/// order on every rank, as with NCCL. A call captures the point the caller has reached on
/// <c>Device.Stream</c> (a stream marker): the collective reads its input only after every kernel issued
/// before the call has finished, so the caller may issue the collective right after the kernel that
/// produces the data and keep launching kernels. The communicator runs the operations one after
/// another, in call order, on its own thread and (on CUDA) its own stream; the caller's thread never
/// blocks unless it calls <see cref="CommWork.Wait()"/>.</para>
/// <para>Between the call and <c>Wait()</c>, the caller must not write the buffers it handed over, nor
/// read the output buffers. After <c>Wait()</c> returns the result is in device memory and every kernel
/// issued afterwards on <c>Device.Stream</c> sees it.</para>
/// <para>Every blocking wait inside an operation (a socket read, a device synchronisation, a store
/// lookup) is bounded by <see cref="Timeout"/>; a failure names the operation, the peer rank and the
/// elapsed time (<see cref="CommException"/>). After a failure the communicator is broken: later calls
/// fail at once, and peers blocked on this rank are released, so that a lost rank stops the whole job
/// within the timeout rather than hanging it.</para>
/// </remarks>
public interface ICommunicator : IDisposable
{
    int Rank { get; }

    int WorldSize { get; }

    /// <summary><c>host</c> or <c>nccl</c>.</summary>
    string Backend { get; }

    /// <summary>Bound on every blocking wait (default 300 s).</summary>
    TimeSpan Timeout { get; set; }

    /// <summary>In place: every rank's <paramref name="buffer"/> becomes the sum (or mean) over ranks.</summary>
    CommWork AllReduce(ArrayView<float> buffer, ReduceOp op = ReduceOp.Sum);

    /// <summary>
    /// In place: every rank's <paramref name="buffer"/> of 16-bit floats (<paramref name="format"/>) becomes the sum
    /// over ranks, each addition rounded back to 16 bits, as NCCL's ncclFloat16 / ncclBfloat16 sums do: half the
    /// bytes of a float32 all-reduce (DDP's fp16 and bf16 compression hooks). The length must be even.
    /// </summary>
    CommWork AllReduce16(ArrayView<ushort> buffer, Engine.Kernels.Float16Format format);

    /// <summary>In place: every rank's <paramref name="buffer"/> becomes <paramref name="root"/>'s.</summary>
    CommWork Broadcast(ArrayView<float> buffer, int root);

    /// <summary>In place on <paramref name="root"/>: its buffer becomes the reduction; other ranks' buffers are left unchanged.</summary>
    CommWork Reduce(ArrayView<float> buffer, int root, ReduceOp op = ReduceOp.Sum);

    /// <summary><paramref name="output"/> (WorldSize x n) receives every rank's <paramref name="input"/> (n), in rank order.</summary>
    CommWork AllGather(ArrayView<float> input, ArrayView<float> output);

    /// <summary>
    /// <paramref name="input"/> (WorldSize x n) is reduced over ranks; rank r's <paramref name="output"/> (n)
    /// receives block r of the result.
    /// </summary>
    CommWork ReduceScatter(ArrayView<float> input, ArrayView<float> output, ReduceOp op = ReduceOp.Sum);

    /// <summary>Completes once every rank has reached it.</summary>
    CommWork Barrier();
}
