using System.Reflection;
using System.Text.RegularExpressions;
using Engine.Kernels;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels.Tests;

/// <summary>
/// The CUDA path checked without a GPU: every kernel compiles to PTX for sm_90, under the name
/// Nsight will show, and keeps its arrays in registers or shared memory rather than local memory.
/// </summary>
public class PtxCompileTests
{
    public static IEnumerable<object[]> Kernels() =>
        typeof(Device).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
            .Where(m => m.GetCustomAttribute<KernelNameAttribute>() is not null)
            .OrderBy(m => m.Name)
            .Select(m => new object[] { $"{m.DeclaringType!.Name}.{m.Name}" });

    private static MethodInfo Find(string qualified)
    {
        string[] parts = qualified.Split('.');
        return typeof(Device).Assembly.GetTypes()
            .Where(t => t.Name == parts[0])
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
            .Single(m => m.Name == parts[1] && m.GetCustomAttribute<KernelNameAttribute>() is not null);
    }

    [Fact]
    public void Every_kernel_is_discovered() => Assert.True(Kernels().Count() >= 4, "no [KernelName] kernels found in Engine.Kernels");

    public static IEnumerable<object[]> Float4Kernels() =>
        Kernels().Where(k => Find((string)k[0]).GetCustomAttribute<KernelNameAttribute>()!.KernelName.EndsWith("_v4", StringComparison.Ordinal));

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_compiles_for_sm90_with_its_name_and_no_local_memory(string qualified)
    {
        string ptx = CompileSm90(qualified, out string name);
        Assert.Matches(new Regex(@"\.entry\s+Kernel_" + Regex.Escape(name) + @"\b"), ptx);
        Assert.False(Regex.IsMatch(ptx, @"\.local\b"), $"{qualified} uses .local memory:\n" +
            string.Join('\n', ptx.Split('\n').Where(l => l.Contains(".local")).Take(5)));
    }

    /// <summary>The float4 kernels really move 16 bytes per instruction: ld.v4.f32 and st.v4.f32 in their PTX (ILGPU turns a 16-byte struct access into one).</summary>
    [Theory]
    [MemberData(nameof(Float4Kernels))]
    public void Float4_kernel_uses_16_byte_loads_and_stores(string qualified)
    {
        string ptx = CompileSm90(qualified, out string name);
        if (!name.StartsWith("fill", StringComparison.Ordinal)) Assert.Matches(new Regex(@"\bld(\.global)?\.v4\.f32\b"), ptx); // fill only stores
        Assert.Matches(new Regex(@"\bst(\.global)?\.v4\.f32\b"), ptx);
    }

    [Fact]
    public void Every_float4_kernel_is_discovered() => Assert.True(Float4Kernels().Count() >= 6, "expected relu fwd/bwd, add, fill, accumulate and sgd float4 kernels");

    private static string CompileSm90(string qualified, out string name)
    {
        MethodInfo method = Find(qualified);
        name = method.GetCustomAttribute<KernelNameAttribute>()!.KernelName;
        Type first = method.GetParameters()[0].ParameterType;
        bool implicitlyGrouped = first == typeof(Index1D) || first == typeof(Index2D) || first == typeof(Index3D);
        var entry = implicitlyGrouped
            ? EntryPointDescription.FromImplicitlyGroupedKernel(method)
            : EntryPointDescription.FromExplicitlyGroupedKernel(method);

        using var context = Context.Create(b => b.Optimize(OptimizationLevel.O1).AllAccelerators().EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90),
            CudaArchitecture.SM_90, CudaInstructionSet.ISA_88, null);
        var kernel = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
        return kernel.PTXAssembly;
    }
}
