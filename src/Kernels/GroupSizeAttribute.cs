namespace Engine.Kernels;

/// <summary>
/// Names the static method, in the kernel's own class, that gives the number of threads in one group of
/// an explicitly grouped kernel under a tuning: <c>static int Method(KernelTuning tuning)</c>. The launcher
/// calls the same method to build its <c>KernelConfig</c>, so the assembler report (<see cref="Assembler.KernelCatalog"/>)
/// computes occupancy for the group the engine really launches. Implicitly grouped kernels (an Index1D
/// first parameter, launched with LoadAutoGroupedKernel) take none: CUDA's occupancy API picks their group.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class GroupSizeAttribute(string method) : Attribute
{
    public string Method { get; } = method;
}
