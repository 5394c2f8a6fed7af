using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn;

/// <summary>
/// A device buffer a layer reuses from step to step: it grows when a larger batch arrives and is
/// otherwise handed back as a prefix view, so a training step allocates nothing.
/// </summary>
internal sealed class Scratch<T> : IDisposable where T : unmanaged
{
    private MemoryBuffer1D<T, Stride1D.Dense>? _buffer;

    public ArrayView<T> Get(Device dev, long length)
    {
        if (_buffer is null || _buffer.Length < length)
        {
            _buffer?.Dispose();
            _buffer = dev.Allocate<T>(Math.Max(length, 1));
        }
        return ((ArrayView<T>)_buffer.View).SubView(0, length);
    }

    public Tensor Tensor(Device dev, params int[] shape)
        => typeof(T) == typeof(float)
            ? new Tensor((ArrayView<float>)(object)Get(dev, Nn.Tensor.ShapeLength(shape)), shape)
            : throw new InvalidOperationException("Only float scratch buffers hold tensors.");

    public void Dispose()
    {
        _buffer?.Dispose();
        _buffer = null;
    }
}
