namespace Engine.Tests;

/// <summary>
/// A fact whose premise is the CPU accelerator (its thread shape, a CPU-only refusal, a second CPU device):
/// it runs in the CPU test run and is skipped, with the premise as the reason, when <see cref="TestDevice"/> is CUDA.
/// </summary>
public sealed class CpuFactAttribute : FactAttribute
{
    public CpuFactAttribute(string premise)
    {
        if (!TestDevice.IsCpu) Skip = DeviceSkip.CpuPremise(premise);
    }
}

/// <inheritdoc cref="CpuFactAttribute"/>
public sealed class CpuTheoryAttribute : TheoryAttribute
{
    public CpuTheoryAttribute(string premise)
    {
        if (!TestDevice.IsCpu) Skip = DeviceSkip.CpuPremise(premise);
    }
}

/// <summary>
/// A fact whose premise is that the device measures time between the markers around a launch: skipped on the
/// simulated GPU in its functional mode, where no cycles pass.
/// </summary>
public sealed class TimedDeviceFactAttribute : FactAttribute
{
    public TimedDeviceFactAttribute()
    {
        if (TestDevice.IsSimulated && SimulatedGpu.IsFunctional) Skip = DeviceSkip.NoSimulatedTime;
    }
}

/// <summary>
/// A fact whose premise is a CUDA device (a driver to ask about contexts, streams and allocations): it runs in the
/// CUDA test run (a GPU, or the simulated one) and is skipped, with the premise as the reason, on the CPU.
/// </summary>
public sealed class CudaFactAttribute : FactAttribute
{
    public CudaFactAttribute(string premise)
    {
        if (TestDevice.IsCpu) Skip = $"premise is a CUDA device ({premise}); the test device is {TestDevice.Description}";
    }
}

/// <summary>The skip reasons, worded once.</summary>
public static class DeviceSkip
{
    public const string NoSimulatedTime =
        "the simulated GPU in functional mode counts no cycles, so every launch measures 0 s (a timing configuration, e.g. rtx3070, has time)";

    public static string CpuPremise(string premise) => $"premise is the CPU accelerator ({premise}); the test device is {TestDevice.Description}";
}

/// <summary>
/// A fact that runs on the simulated GPU of ../shared/gpusim: skipped, naming what is missing, where its env.sh has not
/// been sourced (.ci/run sources it for the simulated-GPU tests).
/// </summary>
public sealed class SimulatedGpuFactAttribute : FactAttribute
{
    public SimulatedGpuFactAttribute()
    {
        if (SimulatedGpu.NotSetUpReason is { } why) Skip = why;
    }
}
