using System.Reflection;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// Names the static method, in the kernel's own class, that gives the number of threads in one group of
/// an explicitly grouped kernel under a tuning: <c>static int Method(KernelTuning tuning)</c>. The launcher
/// calls the same method to build its <c>KernelConfig</c>, so the assembler report (<see cref="Assembler.KernelCatalog"/>)
/// computes occupancy for the group the engine really launches. Implicitly grouped kernels (an Index1D
/// first parameter, launched with LoadAutoGroupedKernel) take none: CUDA's occupancy API picks their group.
/// <para>
/// <see cref="MinGroupsPerMultiprocessor"/>, when set, makes the kernel's launch bounds (PTX .maxntid and
/// .minnctapersm, CUDA's __launch_bounds__): ptxas then keeps the registers low enough for that many groups of
/// that size per SM. The launcher (<see cref="Bounds"/>) and the assembler report compile with the same bounds.
/// </para>
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class GroupSizeAttribute(string method) : Attribute
{
    public string Method { get; } = method;

    /// <summary>Groups per multiprocessor the kernel is compiled for; 0 (the default) leaves the registers to ptxas.</summary>
    public int MinGroupsPerMultiprocessor { get; init; }

    /// <summary>
    /// The ILGPU specialization that carries <paramref name="kernel"/>'s launch bounds for groups of
    /// <paramref name="groupSize"/> threads: empty unless its <see cref="GroupSizeAttribute"/> sets
    /// <see cref="MinGroupsPerMultiprocessor"/>.
    /// </summary>
    public static KernelSpecialization Bounds(MethodInfo kernel, int groupSize)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var attribute = kernel.GetCustomAttribute<GroupSizeAttribute>();
        return attribute is { MinGroupsPerMultiprocessor: > 0 }
            ? new KernelSpecialization(groupSize, attribute.MinGroupsPerMultiprocessor)
            : KernelSpecialization.Empty;
    }
}
