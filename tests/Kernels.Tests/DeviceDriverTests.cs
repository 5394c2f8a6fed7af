namespace Engine.Kernels.Tests;

/// <summary>How the engine finds the CUDA driver for ILGPU.</summary>
public class DeviceDriverTests
{
    /// <summary>The driver's versioned name comes first, so a CUDA toolkit's stub libcuda.so on the library path cannot win.</summary>
    [Fact]
    public void The_real_driver_library_is_tried_before_the_development_name() =>
        Assert.Equal(["libcuda.so.1", "libcuda.so"], Device.CudaDriverResolver.DriverCandidates);
}
