using Engine.Tests;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels.Tests;

/// <summary>
/// The engine's CUDA buffers, streams and launches live in the device's primary context, the one NCCL and the CUDA
/// runtime make current (cudaSetDevice), not in a context of ILGPU's own. Runs on a CUDA test device: a GPU, or
/// the simulated one, whose driver layer keeps contexts apart as CUDA does.
/// </summary>
public class CudaContextTests
{
    [CudaFact("a CUDA driver to ask which context an allocation or stream belongs to")]
    public void Buffers_streams_and_launches_live_in_the_primary_context() => TestDevice.Use(dev =>
    {
        var cuda = (CudaAccelerator)dev.Accelerator;
        IntPtr primary = CudaPrimaryContext.Primary(cuda.DeviceId);
        Assert.Equal(primary, cuda.NativePtr);
        using var buffer = dev.Upload<float>([-1f, 2f, -3f, 4f]);
        Assert.Equal(primary, CudaPrimaryContext.OfPointer(buffer.NativePtr));
        using var stream = (CudaStream)cuda.CreateStream();
        Assert.Equal(primary, CudaPrimaryContext.OfStream(stream.StreamPtr));

        // A launch still works there, and the calling thread is left in the primary context.
        using var y = Numerics.Poisoned(dev, 4);
        Relu.Forward(dev, buffer.View, y.View);
        Assert.Equal([0f, 2f, 0f, 4f], dev.Download<float>(y.View));
        Assert.Equal(primary, CudaPrimaryContext.Current());
    });

    /// <summary>What the check above catches: ILGPU's own context, as every CUDA device had it before.</summary>
    [CudaFact("a CUDA driver to ask which context an allocation belongs to")]
    public void A_device_in_ilgpus_own_context_is_not_in_the_primary_one() => TestDevice.Use(_ =>
    {
        using var own = Device.CreateCudaInOwnContext(0);
        IntPtr primary = CudaPrimaryContext.Primary(0);
        using var buffer = own.Allocate<float>(4);
        Assert.NotEqual(primary, own.Accelerator.NativePtr);
        Assert.NotEqual(primary, CudaPrimaryContext.OfPointer(buffer.NativePtr));
    });
}
