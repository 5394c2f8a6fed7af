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

/// <summary>The skip reasons, worded once.</summary>
public static class DeviceSkip
{
    public static string CpuPremise(string premise) => $"premise is the CPU accelerator ({premise}); the test device is {TestDevice.Description}";
}
