using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// Scratch memory of the two-pass kernels (conv backward-weight's split-K partial sums, the loss's per-group
/// partials), one buffer per device, grown on demand and reused. Launches on the device's one stream run in
/// order and every op consumes its scratch before it returns, so a reuse never overtakes a pending reader.
/// </summary>
internal sealed class Workspace
{
    private static readonly ConditionalWeakTable<Device, Workspace> PerDevice = new();
    private readonly Lock _gate = new();
    private MemoryBuffer1D<float, Stride1D.Dense>? _buffer;

    public static Workspace For(Device dev) => PerDevice.GetValue(dev, _ => new Workspace());

    public ArrayView<float> Get(Device dev, long length)
    {
        lock (_gate)
        {
            if (_buffer is null || _buffer.Length < length)
            {
                if (_buffer is not null)
                {
                    dev.Synchronize(); // the old buffer may still be read by queued kernels
                    _buffer.Dispose();
                }
                _buffer = dev.Allocate<float>(length);
            }
            return _buffer.View.SubView(0, length);
        }
    }
}
