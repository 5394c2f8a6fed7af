using Engine.Tests;

namespace Engine.Kernels.Tests;

/// <summary>
/// A second CPU device with 16-thread groups and a CUDA-like tuning (Tile 4, Work 4, Depth 4). The shared
/// test device runs the CPU's own tuning (one-thread groups); this one exercises the multi-thread paths
/// the GPU takes: tiles loaded by many threads, shared-memory tree reductions, barriers that matter.
/// When the test device is CUDA (ENGINE_TEST_DEVICE), its groups are already that wide: <see cref="Use"/> runs on
/// the test device and <see cref="Both"/> once, on the test device (the CPU run covers the two CPU shapes).
/// </summary>
public static class WideGroupDevice
{
    private static readonly Lazy<Device> Shared = new(() => Device.CreateCpu(4, 4, 1, new KernelTuning(4, 4, 4)));
    private static readonly object Gate = new();

    public static Device Cpu => Shared.Value;

    /// <summary>Runs <paramref name="action"/> with exclusive use of the wide-group device.</summary>
    public static void Use(Action<Device> action)
    {
        if (!TestDevice.IsCpu)
        {
            TestDevice.Use(action);
            return;
        }
        lock (Gate)
        {
            action(Shared.Value);
        }
    }

    /// <summary>Runs <paramref name="action"/> on the shared test device, then on the wide-group device, naming the one that fails.</summary>
    public static void Both(Action<Device> action)
    {
        if (!TestDevice.IsCpu)
        {
            TestDevice.Use(dev => Run(TestDevice.Description, dev, action));
            return;
        }
        TestDevice.Use(dev => Run("the CPU tuning", dev, action));
        Use(dev => Run($"16-thread groups, {dev.Tuning}", dev, action));
    }

    private static void Run(string label, Device dev, Action<Device> action)
    {
        try
        {
            action(dev);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new Xunit.Sdk.XunitException($"On {label}: {e.Message}");
        }
    }
}
