using Engine.Kernels;

namespace Engine.Tests;

/// <summary>
/// One CPU-accelerator device per test process: compiling ILGPU kernels costs far more than running
/// them at test shapes, so tests share the device (and its kernel cache). Tests that need several
/// devices side by side create their own with <see cref="Device.Create"/>.
/// </summary>
public static class TestDevice
{
    private static readonly Lazy<Device> Shared = new(() => Device.Create("cpu"));
    private static readonly object Gate = new();

    public static Device Cpu => Shared.Value;

    /// <summary>Runs <paramref name="action"/> with exclusive use of the shared device (xunit runs classes in parallel).</summary>
    public static void Use(Action<Device> action)
    {
        lock (Gate)
        {
            action(Shared.Value);
        }
    }

    public static T Use<T>(Func<Device, T> func)
    {
        lock (Gate)
        {
            return func(Shared.Value);
        }
    }
}
