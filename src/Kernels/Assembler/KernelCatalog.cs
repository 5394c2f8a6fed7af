using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels.Assembler;

/// <summary>
/// One kernel of the engine as the CUDA accelerator launches it: its method, the name Nsight shows, how
/// its groups are sized, and the values its <see cref="SpecializedValue{T}"/> parameters take.
/// </summary>
public sealed record KernelEntry(MethodInfo Method, string Name, bool ImplicitlyGrouped, MethodInfo? GroupSizeMethod)
{
    /// <summary>Class and method, e.g. "Linear.ForwardKernel".</summary>
    public string QualifiedName => $"{Method.DeclaringType!.Name}.{Method.Name}";

    /// <summary>The names of the SpecializedValue parameters, in order.</summary>
    public IReadOnlyList<string> SpecializedParameters =>
        Method.GetParameters()
            .Where(p => p.ParameterType.IsGenericType && p.ParameterType.GetGenericTypeDefinition() == typeof(SpecializedValue<>))
            .Select(p => p.Name!)
            .ToArray();

    /// <summary>
    /// Threads per group under <paramref name="tuning"/> for an explicitly grouped kernel (from its
    /// <see cref="GroupSizeAttribute"/> method, which its launcher uses too); null when CUDA's occupancy
    /// API chooses (implicitly grouped kernels).
    /// </summary>
    public int? GroupSize(KernelTuning tuning) => GroupSizeMethod is null ? null : (int)GroupSizeMethod.Invoke(null, [tuning])!;

    /// <summary>The launch bounds the launcher compiles the kernel with under <paramref name="tuning"/> (<see cref="GroupSizeAttribute.Bounds"/>).</summary>
    public KernelSpecialization Bounds(KernelTuning tuning) =>
        GroupSize(tuning) is int group ? GroupSizeAttribute.Bounds(Method, group) : KernelSpecialization.Empty;

    /// <summary>
    /// The values the launcher passes for the SpecializedValue parameters under <paramref name="tuning"/>.
    /// The convention is by name: tileSize, workSize and depthSize are the tuning's Tile, Work and Depth.
    /// </summary>
    public object[] Specialization(KernelTuning tuning) =>
        SpecializedParameters.Select(name => (object)(name switch
        {
            "tileSize" => tuning.Tile,
            "workSize" => tuning.Work,
            "depthSize" => tuning.Depth,
            _ => throw new InvalidOperationException(
                $"{QualifiedName}: SpecializedValue parameter '{name}' has no value in KernelTuning; name it tileSize, workSize or depthSize."),
        })).ToArray();
}

/// <summary>Every [KernelName] kernel of Engine.Kernels, found by reflection: nothing to register.</summary>
public static class KernelCatalog
{
    private static readonly Lazy<IReadOnlyList<KernelEntry>> All = new(() => Discover(typeof(Device).Assembly));

    /// <summary>The engine's kernels, ordered by name.</summary>
    public static IReadOnlyList<KernelEntry> Kernels => All.Value;

    /// <summary>The kernel Nsight shows as Kernel_<paramref name="name"/>.</summary>
    public static KernelEntry ByName(string name) =>
        Kernels.FirstOrDefault(k => k.Name == name)
        ?? throw new ArgumentException($"No kernel is named '{name}'. Known: {string.Join(", ", Kernels.Select(k => k.Name))}.");

    /// <summary>Every [KernelName] method of <paramref name="assembly"/> (tests pass their own to check deliberately broken kernels).</summary>
    public static IReadOnlyList<KernelEntry> Discover(System.Reflection.Assembly assembly) =>
        assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
            .Where(m => m.GetCustomAttribute<KernelNameAttribute>() is not null)
            .Select(Describe)
            .OrderBy(k => k.Name, StringComparer.Ordinal)
            .ToArray();

    private static KernelEntry Describe(MethodInfo method)
    {
        string name = method.GetCustomAttribute<KernelNameAttribute>()!.KernelName;
        Type first = method.GetParameters()[0].ParameterType;
        bool implicitly = first == typeof(Index1D) || first == typeof(Index2D) || first == typeof(Index3D);
        MethodInfo? groupSize = null;
        if (method.GetCustomAttribute<GroupSizeAttribute>() is { } attribute)
        {
            groupSize = method.DeclaringType!.GetMethod(attribute.Method, BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic, [typeof(KernelTuning)]);
            if (groupSize is null || groupSize.ReturnType != typeof(int))
            {
                throw new InvalidOperationException(
                    $"{method.DeclaringType.Name}.{method.Name}: [GroupSize(\"{attribute.Method}\")] names no static int {attribute.Method}(KernelTuning) in {method.DeclaringType.Name}.");
            }
        }
        return new KernelEntry(method, name, implicitly, groupSize);
    }
}
