using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Comm;

/// <summary>
/// The host ring's pinned host buffer and the copies between it and device memory, on a stream of the
/// communicator's own. The buffer grows to the largest operation seen and is reused.
/// </summary>
internal sealed class HostStaging : IDisposable
{
    private readonly Device _dev;
    private readonly AcceleratorStream _stream;
    private PageLockedArray1D<float>? _buffer;

    public HostStaging(Device dev)
    {
        _dev = dev;
        _stream = dev.Accelerator.CreateStream();
    }

    /// <summary>Pinned host memory for at least <paramref name="elements"/> floats; valid until the next call.</summary>
    public unsafe float* Stage(long elements)
    {
        if (_buffer is null || _buffer.Length < elements)
        {
            _buffer?.Dispose();
            _buffer = _dev.Accelerator.AllocatePageLocked1D<float>(Math.Max(elements, 1024), true);
        }
        return (float*)Unsafe.AsPointer(ref _buffer[0]);
    }

    public unsafe void CopyToHost(ArrayView<float> view, float* host)
    {
        if (view.Length == 0)
        {
            return;
        }
        ArrayView1D<float, Stride1D.Dense> v = view;
        v.CopyToCPU(_stream, ref Unsafe.AsRef<float>(host), view.Length);
        _stream.Synchronize();
    }

    public unsafe void CopyToDevice(float* host, ArrayView<float> view)
    {
        if (view.Length == 0)
        {
            return;
        }
        ArrayView1D<float, Stride1D.Dense> v = view;
        v.CopyFromCPU(_stream, ref Unsafe.AsRef<float>(host), view.Length);
        _stream.Synchronize();
    }

    public void Dispose()
    {
        _buffer?.Dispose();
        _stream.Dispose();
    }
}
