using Engine.Kernels.Assembler;

namespace Engine.Tests;

/// <summary>
/// Whether the tests that run NVIDIA's assembler can run here. They are skipped, saying how to get the tools,
/// only when the tools are missing and CI is unset; in CI (CI=true) a missing tool fails them instead.
/// </summary>
internal static class CudaToolsAvailability
{
    public static string? SkipReason =>
        OutsideCi.SkipReason(CudaTools.Find() is null ? $"needs NVIDIA's ptxas: {CudaTools.HowToGet}" : null);
}

/// <summary>A fact that runs NVIDIA's assembler (see <see cref="CudaToolsAvailability"/>).</summary>
public sealed class CudaToolsFactAttribute : FactAttribute
{
    public CudaToolsFactAttribute() => Skip = CudaToolsAvailability.SkipReason;
}

/// <summary>A theory that runs NVIDIA's assembler (see <see cref="CudaToolsAvailability"/>).</summary>
public sealed class CudaToolsTheoryAttribute : TheoryAttribute
{
    public CudaToolsTheoryAttribute() => Skip = CudaToolsAvailability.SkipReason;
}
