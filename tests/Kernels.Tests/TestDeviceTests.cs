using Engine.Tests;

namespace Engine.Kernels.Tests;

/// <summary>The kernel tests run on the device ENGINE_TEST_DEVICE names, never silently on another.</summary>
public class TestDeviceTests
{
    [Fact]
    public void The_test_device_is_the_one_asked_for() => TestDevice.Use(dev =>
    {
        if (TestDevice.IsCpu)
        {
            Assert.True(dev.IsCpu, $"{TestDevice.Variable} is unset or cpu, but the tests run on {dev}");
            return;
        }
        Assert.True(dev.IsCuda, $"{TestDevice.Variable}={TestDevice.Spec}, but the tests run on {dev}");
        if (TestDevice.IsSimulated)
        {
            Assert.Contains("GPGPU-Sim", dev.Name);
            Assert.True(File.Exists(Path.Combine(Directory.GetCurrentDirectory(), SimulatedGpu.ConfigFile)),
                $"the simulated GPU runs from {Directory.GetCurrentDirectory()}, which holds no {SimulatedGpu.ConfigFile}");
        }
    });
}
