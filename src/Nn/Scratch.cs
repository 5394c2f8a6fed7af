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

    public void Dispose()
    {
        _buffer?.Dispose();
        _buffer = null;
    }
}

internal static class ScratchExtensions
{
    /// <summary>A tensor of <paramref name="shape"/> over the scratch buffer (grown if needed).</summary>
    public static Tensor Tensor(this Scratch<float> scratch, Device dev, params int[] shape) => new(scratch.Get(dev, Nn.Tensor.ShapeLength(shape)), shape);
}
