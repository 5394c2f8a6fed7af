using Engine.Comm;
using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Parallel;

/// <summary>How DDP's buckets travel: float32 (the default hook), or compressed to 16 bits.</summary>
public enum GradientCompression
{
    None,

    /// <summary>PyTorch's <c>fp16_compress_hook</c>.</summary>
    Fp16,

    /// <summary>PyTorch's <c>bf16_compress_hook</c>.</summary>
    Bf16,
}

/// <summary>
/// PyTorch's <c>fp16_compress_hook</c> and <c>bf16_compress_hook</c>: each bucket is divided by the world size and
/// rounded to 16 bits, all-reduced (summed) in 16 bits, and written back as float32 once the all-reduce completes:
/// half the bytes on the wire, for gradients rounded to the format (fp16: 11 significant bits, +-65504; bf16: 8
/// significant bits, float32's range). One 16-bit buffer per bucket, counted as communication memory.
/// </summary>
public sealed class CompressionHook(Device device, Float16Format format) : IDisposable
{
    private readonly Dictionary<int, MemoryBuffer1D<ushort, Stride1D.Dense>> _buffers = new();

    public static CommHook? For(GradientCompression compression, Device device, out CompressionHook? owner)
    {
        owner = compression switch
        {
            GradientCompression.Fp16 => new CompressionHook(device, Float16Format.Fp16),
            GradientCompression.Bf16 => new CompressionHook(device, Float16Format.Bf16),
            _ => null,
        };
        return owner is null ? null : owner.Hook;
    }

    /// <summary>Bytes on the wire per gradient element.</summary>
    public static int BytesPerElement(GradientCompression compression) => compression == GradientCompression.None ? sizeof(float) : sizeof(ushort);

    public CommWork Hook(ICommunicator comm, GradBucket bucket)
    {
        long length = bucket.Grads.Length, even = (length + 1) / 2 * 2;
        if (!_buffers.TryGetValue(bucket.Index, out var buffer))
        {
            buffer = device.Allocate<ushort>(Math.Max(2, even), MemoryUse.Communication);
            if (even > length) buffer.View.SubView(length, even - length).CopyFromCPU(device.Stream, new ushort[even - length]); // the padding sums to zero
            _buffers[bucket.Index] = buffer;
        }
        ArrayView<ushort> compressed = ((ArrayView<ushort>)buffer.View).SubView(0, length);
        Float16.Compress(device, bucket.Grads, compressed, format, 1f / comm.WorldSize);
        CommWork work = comm.AllReduce16(((ArrayView<ushort>)buffer.View).SubView(0, even), format);
        bucket.Then = () => Float16.Decompress(device, compressed, bucket.Grads, format);
        return work;
    }

    public void Dispose()
    {
        foreach (var b in _buffers.Values) b.Dispose();
        _buffers.Clear();
    }
}
