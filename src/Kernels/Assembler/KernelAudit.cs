using System.Text.RegularExpressions;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels.Assembler;

/// <summary>Loads and stores of one kind counted by the bytes each moves per thread.</summary>
public readonly record struct WidthCounts(int Narrow, int B4, int B8, int B16)
{
    public int Total => Narrow + B4 + B8 + B16;

    public static WidthCounts Of(IEnumerable<SassInstruction> instructions) =>
        instructions.Aggregate(default(WidthCounts), (c, i) => i.Width switch
        {
            16 => c with { B16 = c.B16 + 1 },
            8 => c with { B8 = c.B8 + 1 },
            4 => c with { B4 = c.B4 + 1 },
            _ => c with { Narrow = c.Narrow + 1 },
        });

    /// <summary>"32x4B 8x16B": count x width, widest last; "-" when none.</summary>
    public override string ToString()
    {
        var parts = new List<string>();
        if (Narrow > 0) parts.Add($"{Narrow}x<4B");
        if (B4 > 0) parts.Add($"{B4}x4B");
        if (B8 > 0) parts.Add($"{B8}x8B");
        if (B16 > 0) parts.Add($"{B16}x16B");
        return parts.Count == 0 ? "-" : string.Join(' ', parts);
    }
}

/// <summary>The instruction mix of a kernel's main loop (static counts over the loop body).</summary>
public sealed record LoopMix(int Instructions, int Ffma, int Hmma, int Fmul, int Fadd, int Barriers,
    WidthCounts SharedLoads, WidthCounts SharedStores, WidthCounts GlobalLoads, WidthCounts GlobalStores, int LocalAccesses)
{
    /// <summary>Share of the loop's instructions that are FFMA or HMMA: the ceiling on arithmetic issue.</summary>
    public double MathShare => Instructions == 0 ? 0 : (double)(Ffma + Hmma) / Instructions;

    public static LoopMix Of(SassLoop loop)
    {
        var body = loop.Body;
        return new LoopMix(body.Count, loop.Count("FFMA"), loop.Count("HMMA"), loop.Count("FMUL"), loop.Count("FADD"), loop.Count("BAR"),
            WidthCounts.Of(body.Where(i => i.IsShared && i.IsLoad)), WidthCounts.Of(body.Where(i => i.IsShared && i.IsStore)),
            WidthCounts.Of(body.Where(i => i.IsGlobal && i.IsLoad)), WidthCounts.Of(body.Where(i => i.IsGlobal && i.IsStore)),
            body.Count(i => i.IsLocal));
    }
}

/// <summary>One kernel on one architecture, as ptxas assembles it and as the engine launches it.</summary>
public sealed record KernelAuditRow(
    string Kernel, string Architecture, int Registers, int StaticShared, int DynamicShared, int LocalBytes, int StackFrame,
    int SpillStores, int SpillLoads, int GroupSize, bool GroupFromOccupancyApi, Occupancy Occupancy, LoopMix? MainLoop,
    int TotalInstructions, IReadOnlyList<string> Faults)
{
    public bool Passed => Faults.Count == 0;
}

/// <summary>
/// Checks every kernel as the CUDA driver will load it: PTX generated as the accelerator does (specialised with
/// the CUDA tuning), then NVIDIA's assembler for each architecture. A fault is anything that would fail at
/// load (an unresolved extern, a ptxas error) or cost speed by construction (spills, a stack frame, local memory).
/// </summary>
public sealed class KernelAudit(CudaTools tools) : IDisposable
{
    /// <summary>
    /// PTX ISA of the audit's PTX. ptxas 11.8 (Debian's) reads PTX up to 7.8; ILGPU's PTX for a newer driver
    /// differs only in the .version line and in instructions these kernels do not use.
    /// </summary>
    public static CudaInstructionSet AuditIsa => CudaInstructionSet.ISA_78;

    /// <summary>The CUDA architectures the engine targets, as ILGPU names them, by their ptxas name.</summary>
    public static IReadOnlyDictionary<string, CudaArchitecture> Architectures { get; } = new Dictionary<string, CudaArchitecture>
    {
        ["sm_80"] = CudaArchitecture.SM_80,
        ["sm_86"] = CudaArchitecture.SM_86,
        ["sm_89"] = CudaArchitecture.SM_89,
        ["sm_90"] = CudaArchitecture.SM_90,
    };

    private readonly PtxCompiler _compiler = new();

    public CudaTools Tools { get; } = tools;

    /// <summary>The PTX of <paramref name="kernel"/> as the CUDA accelerator would build it for <paramref name="architecture"/>.</summary>
    public string Ptx(KernelEntry kernel, string architecture, CudaInstructionSet? isa = null) =>
        _compiler.Compile(kernel, Architectures[architecture], isa ?? AuditIsa, KernelTuning.Gpu);

    /// <summary>Faults visible in the PTX alone (no assembler needed): a wrong entry name, calls to unresolved functions, local memory.</summary>
    public static IReadOnlyList<string> PtxFaults(KernelEntry kernel, string ptx)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(ptx);
        var faults = new List<string>();
        if (!Regex.IsMatch(ptx, @"\.entry\s+Kernel_" + Regex.Escape(kernel.Name) + @"\b"))
        {
            faults.Add($"no entry named Kernel_{kernel.Name} (Nsight would not show the kernel's name)");
        }
        foreach (Match m in Regex.Matches(ptx, @"\.extern\s+\.func\s+(?:\([^)]*\)\s*)?(\w+)"))
        {
            faults.Add($"calls unresolved function {m.Groups[1].Value} (.extern .func): ptxas and the driver refuse it; use an intrinsic ILGPU maps to PTX");
        }
        if (Regex.IsMatch(ptx, @"\.local\b"))
        {
            faults.Add("uses .local memory (a register array indexed at run time, or a value passed by reference into inline PTX)");
        }
        return faults;
    }

    /// <summary>
    /// Assembles <paramref name="kernel"/> for <paramref name="architecture"/> and reports its resources, the occupancy of
    /// the group the engine launches, its main loop's mix, and every fault. <paramref name="maxRegisters"/> caps
    /// registers (tests use it to show that spills are caught).
    /// </summary>
    public KernelAuditRow Audit(KernelEntry kernel, string architecture, int? maxRegisters = null) =>
        AuditAll([kernel], architecture, maxRegisters)[0];

    /// <summary>
    /// <see cref="Audit"/> for many kernels with one run of the assembler: kernels whose PTX already shows an
    /// unresolved call are assembled alone (so the error is theirs), and if the module still fails, each kernel is
    /// assembled alone to say which.
    /// </summary>
    public IReadOnlyList<KernelAuditRow> AuditAll(IReadOnlyList<KernelEntry> kernels, string architecture, int? maxRegisters = null)
    {
        ArgumentNullException.ThrowIfNull(kernels);
        var limits = CudaArchitectureLimits.Parse(architecture);
        var ptx = kernels.Select(k => (Kernel: k, Entry: $"Kernel_{k.Name}", Ptx: Ptx(k, limits.Name))).ToArray();
        var faults = ptx.ToDictionary(p => p.Kernel, p => new List<string>(PtxFaults(p.Kernel, p.Ptx)));
        var assembled = new Dictionary<KernelEntry, AssembledKernel>();

        void AssembleAlone((KernelEntry Kernel, string Entry, string Ptx) p)
        {
            try
            {
                assembled[p.Kernel] = Ptxas.Assemble(Tools, p.Entry, p.Ptx, limits.Name, maxRegisters);
            }
            catch (PtxasException e)
            {
                faults[p.Kernel].Add(e.Message);
            }
        }

        var clean = ptx.Where(p => !p.Ptx.Contains(".extern", StringComparison.Ordinal)).ToArray();
        foreach (var p in ptx.Except(clean)) AssembleAlone(p);
        try
        {
            var module = Ptxas.AssembleModule(Tools, clean.Select(p => (p.Entry, p.Ptx)).ToArray(), limits.Name, maxRegisters);
            foreach (var p in clean) assembled[p.Kernel] = module[p.Entry];
        }
        catch (PtxasException)
        {
            foreach (var p in clean) AssembleAlone(p);
        }

        return kernels.Select(k => Row(k, limits, assembled.GetValueOrDefault(k), faults[k])).ToArray();
    }

    private static KernelAuditRow Row(KernelEntry kernel, CudaArchitectureLimits limits, AssembledKernel? assembled, List<string> faults)
    {
        if (assembled is null)
        {
            return new KernelAuditRow(kernel.Name, limits.Name, 0, 0, 0, 0, 0, 0, 0, 0, false, default, null, 0, faults);
        }
        if (assembled.SpillStores > 0 || assembled.SpillLoads > 0)
        {
            faults.Add($"spills registers ({assembled.SpillStores} bytes stored, {assembled.SpillLoads} loaded)");
        }
        if (assembled.StackFrame > 0) faults.Add($"has a {assembled.StackFrame}-byte stack frame");
        if (assembled.LocalBytes > 0) faults.Add($"uses {assembled.LocalBytes} bytes of local memory per thread");
        int localOps = assembled.Sass.Instructions.Count(i => i.IsLocal);
        if (localOps > 0) faults.Add($"{localOps} local-memory loads/stores (LDL/STL) in its SASS");

        // None of the engine's kernels takes dynamic shared memory; its static shared memory is in ptxas's report.
        const int dynamicShared = 0;
        int? declared = kernel.GroupSize(KernelTuning.Gpu);
        int group = declared ?? Occupancy.MaxPotentialBlockSize(limits, assembled.Registers, assembled.StaticShared + dynamicShared);
        var occupancy = group == 0 ? default : Occupancy.Compute(limits, group, assembled.Registers, assembled.StaticShared + dynamicShared);
        if (occupancy.BlocksPerSm == 0)
        {
            faults.Add($"cannot launch: a group of {group} threads needs more registers or shared memory than an SM of {limits.Name} has");
        }
        var main = assembled.Sass.MainLoop is { } loop ? LoopMix.Of(loop) : null;
        return new KernelAuditRow(kernel.Name, limits.Name, assembled.Registers, assembled.StaticShared, dynamicShared,
            assembled.LocalBytes, assembled.StackFrame, assembled.SpillStores, assembled.SpillLoads, group, declared is null,
            occupancy, main, assembled.Sass.Instructions.Count, faults);
    }

    /// <summary>The SASS of <paramref name="kernel"/> on <paramref name="architecture"/> (tests read facts from it).</summary>
    public SassListing Sass(KernelEntry kernel, string architecture) =>
        Ptxas.Assemble(Tools, $"Kernel_{kernel.Name}", Ptx(kernel, architecture), architecture).Sass;

    public void Dispose() => _compiler.Dispose();
}
