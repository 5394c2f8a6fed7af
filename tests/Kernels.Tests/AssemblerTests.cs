using System.Collections.Concurrent;
using Engine.Kernels.Assembler;
using Engine.Tests;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels.Tests;

/// <summary>
/// NVIDIA's assembler as the judge of the CUDA path with no GPU: every kernel, specialised and grouped as the
/// engine launches it, assembles for sm_80/86/89/90 with no spills, stack frame or local memory, and the SASS
/// facts that decide speed hold. Each check is also shown to catch a kernel broken on purpose.
/// </summary>
public class AssemblerTests
{
    public static TheoryData<string> Architectures() => new(KernelAudit.Architectures.Keys);

    /// <summary>One assembler run per architecture, shared by the tests that read its rows.</summary>
    private static readonly ConcurrentDictionary<string, Lazy<IReadOnlyList<KernelAuditRow>>> Rows = new();

    private static IReadOnlyList<KernelAuditRow> Audit(string architecture) =>
        Rows.GetOrAdd(architecture, a => new(() =>
        {
            using var audit = new KernelAudit(CudaTools.Require());
            return audit.AuditAll(KernelCatalog.Kernels, a);
        })).Value;

    private static KernelAuditRow Row(string kernel, string architecture) => Audit(architecture).Single(r => r.Kernel == kernel);

    [CudaToolsTheory]
    [MemberData(nameof(Architectures))]
    public void Every_kernel_assembles_with_no_spills_stack_or_local_memory(string architecture)
    {
        var rows = Audit(architecture);
        Assert.Equal(KernelCatalog.Kernels.Count, rows.Count);
        var faulty = rows.Where(r => !r.Passed).Select(r => $"{r.Kernel}: {string.Join("; ", r.Faults)}").ToArray();
        Assert.True(faulty.Length == 0, $"{architecture}:\n{string.Join('\n', faulty)}");
        Assert.All(rows, r => Assert.True(r.Registers > 0 && r.TotalInstructions > 0, $"{r.Kernel}: nothing assembled"));
    }

    [CudaToolsTheory]
    [MemberData(nameof(Architectures))]
    public void Every_kernel_launches_with_at_least_one_resident_group(string architecture) =>
        Assert.All(Audit(architecture), r => Assert.True(r.Occupancy.BlocksPerSm >= 1, $"{r.Kernel}: group of {r.GroupSize} cannot be resident"));

    /// <summary>The GEMM-shaped kernels' main loops issue FFMA, never a separate FMUL and FADD (ptxas contracts ILGPU's mul + add).</summary>
    [CudaToolsTheory]
    [InlineData("conv2d_fwd")]
    [InlineData("conv2d_bwd_data")]
    [InlineData("conv2d_bwd_data_phase")]
    [InlineData("conv2d_bwd_weight")]
    [InlineData("linear_fwd")]
    [InlineData("linear_bwd_data")]
    [InlineData("linear_bwd_weight")]
    public void Gemm_main_loop_is_fused_multiply_adds(string kernel)
    {
        foreach (string architecture in KernelAudit.Architectures.Keys)
        {
            var loop = Row(kernel, architecture).MainLoop;
            Assert.NotNull(loop);
            Assert.True(loop.Ffma > 0 && loop.Fmul == 0 && loop.Fadd == 0,
                $"{kernel} on {architecture}: main loop has {loop.Ffma} FFMA, {loop.Fmul} FMUL, {loop.Fadd} FADD");
        }
    }

    /// <summary>
    /// The kernel issue's bar for the kernels each conv pass runs by default (forward, backward-data by stride phase,
    /// backward-weight): on sm_90 the main loop is at least 80% FFMA by the assembler's static count, every
    /// shared-memory load in it moves 16 bytes, and at least half the SM's warps can be resident.
    /// </summary>
    [CudaToolsTheory]
    [InlineData("conv2d_fwd")]
    [InlineData("conv2d_bwd_data_phase")]
    [InlineData("conv2d_bwd_weight")]
    public void Default_conv_main_loop_is_80_percent_ffma_fed_by_16_byte_shared_loads_on_sm_90(string kernel)
    {
        var row = Row(kernel, "sm_90");
        var loop = row.MainLoop;
        Assert.NotNull(loop);
        Assert.True(loop.MathShare >= 0.80, $"{kernel}: {loop.Ffma} FFMA in a {loop.Instructions}-instruction main loop ({loop.MathShare:P1})");
        Assert.True(loop.SharedLoads.Total > 0 && loop.SharedLoads.Total == loop.SharedLoads.B16, $"{kernel}: main-loop shared loads {loop.SharedLoads}");
        Assert.True(row.Occupancy.Fraction >= 0.5, $"{kernel}: occupancy {row.Occupancy.Fraction:P0} ({row.Registers} registers)");
    }

    /// <summary>The TF32 forward keeps its accumulators in registers: no local memory in its loop, and at least half the SM's warps resident on sm_90.</summary>
    [CudaToolsFact]
    public void Tf32_convolution_keeps_accumulators_out_of_memory_at_half_occupancy()
    {
        var row = Row("conv2d_fwd_tf32", "sm_90");
        Assert.NotNull(row.MainLoop);
        Assert.Equal(0, row.MainLoop.LocalAccesses);
        Assert.True(row.Occupancy.Fraction >= 0.5, $"conv2d_fwd_tf32: occupancy {row.Occupancy.Fraction:P0} ({row.Registers} registers)");
    }

    [CudaToolsFact]
    public void Tf32_convolution_runs_on_tensor_cores() =>
        Assert.All(KernelAudit.Architectures.Keys, a => Assert.True(Row("conv2d_fwd_tf32", a).MainLoop?.Hmma > 0, $"no HMMA in conv2d_fwd_tf32's main loop on {a}"));

    public static TheoryData<string> Float4Kernels() =>
        new(KernelCatalog.Kernels.Select(k => k.Name).Where(n => n.EndsWith("_v4", StringComparison.Ordinal)));

    /// <summary>A float4 kernel's main loop stores only 16-byte vectors and, if it loads tensors, loads 16-byte vectors too (per-channel scalars may be 4 bytes).</summary>
    [CudaToolsTheory]
    [MemberData(nameof(Float4Kernels))]
    public void Float4_kernel_moves_16_bytes_per_access(string kernel)
    {
        var loop = Row(kernel, "sm_90").MainLoop;
        Assert.NotNull(loop);
        Assert.True(loop.GlobalStores.B16 > 0 && loop.GlobalStores.Total == loop.GlobalStores.B16,
            $"{kernel}: main-loop stores {loop.GlobalStores}");
        Assert.True(loop.GlobalLoads.Total == 0 || loop.GlobalLoads.B16 > 0, $"{kernel}: main-loop loads {loop.GlobalLoads}");
    }

    // ---- the checks catch kernels broken on purpose ----

    private static KernelEntry Broken(string name) => KernelCatalog.Discover(typeof(BrokenKernels).Assembly).Single(k => k.Name == name);

    [Fact]
    public void An_unresolved_extern_call_is_caught_in_the_ptx()
    {
        using var compiler = new PtxCompiler();
        var kernel = Broken("broken_extern_call");
        string ptx = compiler.Compile(kernel, CudaArchitecture.SM_90, KernelAudit.AuditIsa, KernelTuning.Gpu);
        Assert.Contains(KernelAudit.PtxFaults(kernel, ptx), f => f.Contains("unresolved function Log2", StringComparison.Ordinal));
    }

    [CudaToolsFact]
    public void An_unresolved_extern_call_is_refused_by_the_assembler()
    {
        using var audit = new KernelAudit(CudaTools.Require());
        var row = audit.Audit(Broken("broken_extern_call"), "sm_90");
        Assert.False(row.Passed);
        Assert.Contains(row.Faults, f => f.Contains("ptxas", StringComparison.Ordinal) && f.Contains("Log2", StringComparison.Ordinal));
    }

    [CudaToolsFact]
    public void A_bad_kernel_does_not_hide_the_good_ones_assembled_with_it()
    {
        using var audit = new KernelAudit(CudaTools.Require());
        var rows = audit.AuditAll([Broken("broken_extern_call"), KernelCatalog.ByName("relu_fwd")], "sm_80");
        Assert.False(rows[0].Passed);
        Assert.True(rows[1].Passed, string.Join("; ", rows[1].Faults));
        Assert.True(rows[1].Registers > 0);
    }

    [CudaToolsFact]
    public void Local_memory_is_caught()
    {
        using var audit = new KernelAudit(CudaTools.Require());
        var row = audit.Audit(Broken("broken_local_array"), "sm_90");
        Assert.Contains(row.Faults, f => f.Contains(".local", StringComparison.Ordinal));
        Assert.Contains(row.Faults, f => f.Contains("stack frame", StringComparison.Ordinal) || f.Contains("local memory", StringComparison.Ordinal));
    }

    [CudaToolsFact]
    public void Spills_are_caught()
    {
        // The real forward convolution needs 40 registers; capped at 24 (as a tight launch bound would) it spills.
        using var audit = new KernelAudit(CudaTools.Require());
        var row = audit.Audit(KernelCatalog.ByName("conv2d_fwd"), "sm_90", maxRegisters: 24);
        Assert.True(row.SpillStores > 0, $"expected spills at 24 registers, got {row.Registers} registers and no spill");
        Assert.Contains(row.Faults, f => f.Contains("spills", StringComparison.Ordinal));
    }
}
