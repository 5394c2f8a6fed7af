using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Parallel;

/// <summary>
/// Copies between the memories of two devices. Within one device it is a device copy; between two
/// accelerators it goes through host memory (device -> host -> device), which is what the seed's
/// GPUs without peer-to-peer access do over PCIe, and the only way between CPU-emulated devices.
/// </summary>
public sealed class DeviceTransfer
{
    private float[] _staging = Array.Empty<float>();

    public void Copy(Device from, ArrayView<float> source, Device to, ArrayView<float> target)
    {
        if (source.Length != target.Length) throw new ArgumentException($"Transfer of {source.Length} elements into {target.Length}.");
        if (source.Length == 0) return;
        var cost = new Engine.Kernels.Cost(0, source.Length * sizeof(float));
        if (ReferenceEquals(from, to))
        {
            using var profile = to.Profile("memcpy_dtod", cost);
            source.CopyTo(to.Stream, target);
            return;
        }
        if (_staging.Length < source.Length) _staging = new float[source.Length];
        Span<float> host = _staging.AsSpan(0, (int)source.Length);
        using (from.Profile("memcpy_dtoh", cost))
        {
            source.CopyToCPU(from.Stream, host);
        }
        from.Synchronize();
        using (to.Profile("memcpy_htod", cost))
        {
            target.CopyFromCPU(to.Stream, host);
        }
        to.Synchronize();
    }

    public static void CopyInts(Device from, ArrayView<int> source, Device to, ArrayView<int> target)
    {
        if (source.Length == 0) return;
        if (ReferenceEquals(from, to))
        {
            source.CopyTo(to.Stream, target);
            return;
        }
        var host = new int[source.Length];
        source.CopyToCPU(from.Stream, host);
        from.Synchronize();
        target.CopyFromCPU(to.Stream, host);
        to.Synchronize();
    }
}
