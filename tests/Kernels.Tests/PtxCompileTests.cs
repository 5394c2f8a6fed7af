using System.Reflection;
using System.Text.RegularExpressions;
using Engine.Kernels.Assembler;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels.Tests;

/// <summary>
/// The CUDA path checked without a GPU or NVIDIA's tools: every kernel compiles to PTX as the CUDA accelerator
/// builds it (specialised with the CUDA tuning), under the name Nsight will show, with no call to an unresolved
/// function and no local memory, at the lowest and highest PTX ISA the supported drivers ask for.
/// </summary>
public class PtxCompileTests
{
    public static TheoryData<string> Kernels() => new(KernelCatalog.Kernels.Select(k => k.Name));

    private static readonly Lazy<PtxCompiler> Compiler = new(() => new PtxCompiler());

    [Fact]
    public void Every_kernel_is_discovered() => Assert.True(KernelCatalog.Kernels.Count >= 40, $"only {KernelCatalog.Kernels.Count} [KernelName] kernels found in Engine.Kernels");

    [Fact]
    public void Kernel_names_are_unique() =>
        Assert.Empty(KernelCatalog.Kernels.GroupBy(k => k.Name).Where(g => g.Count() > 1).Select(g => g.Key));

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Kernel_compiles_with_its_name_no_extern_call_and_no_local_memory(string name)
    {
        var kernel = KernelCatalog.ByName(name);
        foreach (var isa in new[] { LowestIsa, HighestIsa })
        {
            string ptx = Compiler.Value.Compile(kernel, CudaArchitecture.SM_90, isa, KernelTuning.Gpu);
            Assert.Matches(new Regex(@"\.entry\s+Kernel_" + Regex.Escape(name) + @"\b"), ptx);
            var faults = KernelAudit.PtxFaults(kernel, ptx);
            Assert.True(faults.Count == 0, $"{name} at PTX ISA {isa}: {string.Join("; ", faults)}");
        }
    }

    /// <summary>The float4 kernels really move 16 bytes per instruction: ld.v4.f32 and st.v4.f32 in their PTX (ILGPU turns a 16-byte struct access into one).</summary>
    [Theory]
    [MemberData(nameof(Float4Kernels))]
    public void Float4_kernel_uses_16_byte_loads_and_stores(string name)
    {
        string ptx = Compiler.Value.Compile(KernelCatalog.ByName(name), CudaArchitecture.SM_90, HighestIsa, KernelTuning.Gpu);
        if (!name.StartsWith("fill", StringComparison.Ordinal)) Assert.Matches(new Regex(@"\bld(\.global)?\.v4\.f32\b"), ptx); // fill only stores
        Assert.Matches(new Regex(@"\bst(\.global)?\.v4\.f32\b"), ptx);
    }

    public static TheoryData<string> Float4Kernels() =>
        new(KernelCatalog.Kernels.Select(k => k.Name).Where(n => n.EndsWith("_v4", StringComparison.Ordinal)));

    [Fact]
    public void Every_float4_kernel_is_discovered() =>
        Assert.True(KernelCatalog.Kernels.Count(k => k.Name.EndsWith("_v4", StringComparison.Ordinal)) >= 6, "expected relu fwd/bwd, add, fill, accumulate and sgd float4 kernels");

    // ---- how kernels are launched, declared once ----

    [Fact]
    public void Every_explicitly_grouped_kernel_declares_its_group_size_and_no_other_does()
    {
        foreach (var k in KernelCatalog.Kernels)
        {
            Assert.True(k.ImplicitlyGrouped == (k.GroupSizeMethod is null),
                k.ImplicitlyGrouped
                    ? $"{k.QualifiedName} is auto-grouped (CUDA's occupancy API picks its group) but declares [GroupSize]"
                    : $"{k.QualifiedName} is launched with an explicit group but has no [GroupSize(...)] naming the method its launcher uses");
        }
    }

    [Fact]
    public void Declared_group_sizes_fit_a_cuda_group_and_the_cpu_emulator()
    {
        foreach (var k in KernelCatalog.Kernels.Where(k => !k.ImplicitlyGrouped))
        {
            int gpu = k.GroupSize(KernelTuning.Gpu)!.Value;
            Assert.InRange(gpu, 32, CudaArchitectureLimits.MaxThreadsPerBlock);
            Assert.True(gpu % 32 == 0, $"{k.Name}: a CUDA group of {gpu} threads is not whole warps");
            Assert.InRange(k.GroupSize(KernelTuning.Cpu)!.Value, 1, gpu);
        }
    }

    [Fact]
    public void Specialized_parameters_take_values_from_the_tuning()
    {
        var conv = KernelCatalog.ByName("conv2d_fwd");
        Assert.Equal(["tileSize", "workSize", "depthSize"], conv.SpecializedParameters);
        Assert.Equal(new object[] { 16, 4, 16 }, conv.Specialization(new KernelTuning(16, 4, 16)));
        Assert.All(KernelCatalog.Kernels, k => k.Specialization(KernelTuning.Gpu)); // throws for a parameter the tuning cannot fill
    }

    /// <summary>Specialisation is real: the tile edge becomes a constant, so the PTX differs between tunings.</summary>
    [Fact]
    public void A_specialised_kernel_compiles_differently_for_another_tuning()
    {
        var conv = KernelCatalog.ByName("conv2d_fwd");
        string gpu = Compiler.Value.Compile(conv, CudaArchitecture.SM_90, HighestIsa, KernelTuning.Gpu);
        string other = Compiler.Value.Compile(conv, CudaArchitecture.SM_90, HighestIsa, new KernelTuning(8, 2, 8));
        Assert.NotEqual(gpu, other);
    }

    // ---- the PTX ISA the driver asks for ----

    private static readonly CudaInstructionSet LowestIsa = CudaInstructionSet.ISA_78;
    private static readonly CudaInstructionSet HighestIsa = CudaInstructionSet.ISA_88;

    /// <summary>
    /// ILGPU picks the PTX ISA from the driver's CUDA version. The expectations are NVIDIA's (PTX ISA release
    /// notes: CUDA 11.8 introduced ISA 7.8, 12.0 8.0, ..., 12.5 8.5, 12.7 8.6, 12.8 8.7, 12.9 8.8), capped at 8.8,
    /// the newest ILGPU 1.5.3 writes; a CUDA 13 driver (the target hosts' driver 580) gets 8.8 as well.
    /// </summary>
    [Theory]
    [InlineData(11, 8, 78)]
    [InlineData(12, 0, 80)]
    [InlineData(12, 1, 81)]
    [InlineData(12, 2, 82)]
    [InlineData(12, 3, 83)]
    [InlineData(12, 4, 84)]
    [InlineData(12, 5, 85)]
    [InlineData(12, 6, 85)]
    [InlineData(12, 7, 86)]
    [InlineData(12, 8, 87)]
    [InlineData(12, 9, 88)]
    [InlineData(13, 0, 88)]
    [InlineData(13, 1, 88)]
    public void Driver_version_selects_the_ptx_isa(int major, int minor, int isa)
    {
        var chosen = CudaAccelerator.GetInstructionSet(CudaArchitecture.SM_90, CudaDriverVersion.FromMajorMinor(major, minor));
        Assert.Equal(new CudaInstructionSet(isa / 10, isa % 10), chosen);
    }

    [Fact]
    public void The_lowest_and_highest_isa_are_the_ends_of_the_supported_range()
    {
        Assert.Equal(LowestIsa, CudaAccelerator.GetInstructionSet(CudaArchitecture.SM_90, CudaDriverVersion.FromMajorMinor(11, 8)));
        Assert.Equal(HighestIsa, CudaAccelerator.GetInstructionSet(CudaArchitecture.SM_90, CudaDriverVersion.FromMajorMinor(13, 0)));
    }
}
