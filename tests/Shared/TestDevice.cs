using Engine.Kernels;

namespace Engine.Tests;

/// <summary>
/// The device the kernel tests run on, one per test process: compiling ILGPU kernels costs far more than
/// running them at test shapes, so tests share the device (and its kernel cache). It is the CPU accelerator
/// unless ENGINE_TEST_DEVICE asks for CUDA (<c>cuda</c> or <c>cuda:N</c>): a GPU, or the simulated one of
/// ../shared/gpusim when its env.sh has been sourced (<see cref="SimulatedGpu"/>), which .ci/run uses to run
/// the kernel tests a second time on the real CUDA path. Tests that need several devices side by side create
/// their own with <see cref="Device.Create"/>.
/// </summary>
public static class TestDevice
{
    public const string Variable = "ENGINE_TEST_DEVICE";

    private static readonly Lazy<Device> Shared = new(Create);
    private static readonly Lazy<Device> SharedCpu = new(() => IsCpu ? Shared.Value : Device.Create("cpu"));
    private static readonly object Gate = new();

    /// <summary>What ENGINE_TEST_DEVICE asks for, lower case; <c>cpu</c> when it is unset.</summary>
    public static string Spec { get; } = (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } v ? v : "cpu").Trim().ToLowerInvariant();

    /// <summary>True when the tests run on ILGPU's CPU accelerator (the default).</summary>
    public static bool IsCpu => Spec == "cpu";

    /// <summary>True when the tests run on the simulated GPU: CUDA asked for with the simulator's environment set.</summary>
    public static bool IsSimulated => !IsCpu && SimulatedGpu.ConfigDirectory is not null;

    /// <summary>A short name for messages: "the CPU accelerator", "the simulated GPU", "cuda:0".</summary>
    public static string Description => IsCpu ? "the CPU accelerator" : IsSimulated ? "the simulated GPU" : Spec;

    /// <summary>The CPU accelerator, whatever the test device is (the Comm and Runner tests that need a CPU device).</summary>
    public static Device Cpu => SharedCpu.Value;

    /// <summary>Runs <paramref name="action"/> with exclusive use of the test device (xunit runs classes in parallel).</summary>
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

    private static Device Create()
    {
        if (IsCpu)
        {
            return Device.Create("cpu");
        }
        if (Spec != "cuda" && !(Spec.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(Spec.AsSpan(5), out int i) && i >= 0))
        {
            throw new InvalidOperationException($"{Variable}={Spec}: expected cpu (the default), cuda or cuda:N.");
        }
        if (IsSimulated)
        {
            // GPGPU-Sim reads ./gpgpusim.config when the driver initialises, and ends the process if it is not there.
            SimulatedGpu.EnterWorkingFolder();
        }
        try
        {
            return Device.Create(Spec);
        }
        catch (ArgumentException e)
        {
            throw new InvalidOperationException($"{Variable}={Spec}: {e.Message}", e);
        }
    }
}
