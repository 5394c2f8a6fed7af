using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels.Tests;

/// <summary>
/// Kernels broken on purpose, each in a way the assembler check must catch. They live in the test assembly,
/// so <see cref="Assembler.KernelCatalog.Kernels"/> (the engine's) never sees them.
/// </summary>
internal static class BrokenKernels
{
    /// <summary>MathF.Log2 is not remapped by ILGPU 1.5.3: it becomes an unresolved `.extern .func Log2`.</summary>
    [KernelName("broken_extern_call")]
    internal static void ExternCall(Index1D i, ArrayView<float> x) => x[i] = MathF.Log2(x[i]);

    /// <summary>A per-thread array indexed by a value known only at run time cannot live in registers: local memory.</summary>
    [KernelName("broken_local_array")]
    internal static void LocalArray(Index1D i, ArrayView<float> x, ArrayView<int> pick)
    {
        var scratch = LocalMemory.Allocate<float>(32);
        for (int k = 0; k < 32; k++) scratch[k] = x[i] * k;
        x[i] = scratch[pick[i] & 31];
    }
}
