using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Engine.Kernels.Assembler;

namespace Engine.Runner.Commands;

/// <summary>
/// <c>engine kernels</c>: every kernel assembled by NVIDIA's ptxas as the CUDA accelerator would load it, with the
/// resources and theoretical occupancy Nsight Compute's launch-statistics and occupancy sections show, and the
/// instruction mix of its main loop. Needs no GPU; exits 1 when a kernel has a fault (an unresolved extern, an
/// assembler error, spills, local memory).
/// </summary>
internal static class KernelsCommand
{
    public static Command Create()
    {
        var command = new Command("kernels",
            "Assemble every kernel with NVIDIA's ptxas (no GPU needed) and print registers, shared and local memory, spills, " +
            "group size, theoretical occupancy and its limiter, and the main loop's instruction mix, per architecture.");
        var arch = new Option<string[]>("--arch")
        {
            Description = $"architectures ({string.Join(", ", KernelAudit.Architectures.Keys)})",
            DefaultValueFactory = _ => KernelAudit.Architectures.Keys.ToArray(),
            AllowMultipleArgumentsPerToken = true,
        };
        var kernel = new Option<string[]>("--kernel") { Description = "only these kernels (none given: every kernel)", AllowMultipleArgumentsPerToken = true };
        var json = new Option<string?>("--json") { Description = "also write the rows as JSON to this file ('-' for stdout instead of the table)" };
        var sass = new Option<bool>("--sass") { Description = "also print each kernel's main loop in SASS (with --kernel: the loop the table's counts come from)" };
        command.Options.Add(arch);
        command.Options.Add(kernel);
        command.Options.Add(json);
        command.Options.Add(sass);
        command.SetAction(r => CliErrors.Run(() =>
        {
            string[] architectures = r.GetValue(arch)!.SelectMany(a => a.Split(',', StringSplitOptions.RemoveEmptyEntries)).ToArray();
            foreach (string a in architectures) CudaArchitectureLimits.Parse(a);
            string[] names = (r.GetValue(kernel) ?? []).SelectMany(a => a.Split(',', StringSplitOptions.RemoveEmptyEntries)).ToArray();
            var kernels = names.Length == 0 ? KernelCatalog.Kernels : names.Select(KernelCatalog.ByName).ToArray();
            string? jsonPath = r.GetValue(json);
            var tools = CudaTools.Find();
            if (tools is null)
            {
                Console.Error.WriteLine($"error: {CudaTools.HowToGet}");
                return CliErrors.UserError;
            }

            var clock = Stopwatch.StartNew();
            var rows = Run(tools, kernels, architectures);
            if (jsonPath == "-")
            {
                Console.WriteLine(ToJson(tools, rows));
            }
            else
            {
                Console.WriteLine($"ptxas {tools.Version()} ({tools.Ptxas}); PTX ISA {KernelAudit.AuditIsa}; CUDA tuning {Kernels.KernelTuning.Gpu}");
                foreach (string a in architectures) Print(CudaArchitectureLimits.Parse(a), rows.Where(x => x.Architecture == a).ToArray());
                if (jsonPath is not null) File.WriteAllText(jsonPath, ToJson(tools, rows));
                if (r.GetValue(sass)) PrintMainLoops(tools, kernels, architectures);
                int faulty = rows.Count(x => !x.Passed);
                Console.WriteLine($"{rows.Count - faulty} passed, {faulty} failed ({rows.Count} kernel x architecture pairs in {clock.Elapsed.TotalSeconds:F1} s)");
            }
            return rows.All(x => x.Passed) ? 0 : 1;
        }));
        return command;
    }

    /// <summary>Audits every kernel on every architecture: one assembler run per architecture, architectures side by side.</summary>
    internal static IReadOnlyList<KernelAuditRow> Run(CudaTools tools, IReadOnlyList<KernelEntry> kernels, IReadOnlyList<string> architectures)
    {
        var rows = new IReadOnlyList<KernelAuditRow>[architectures.Count];
        Parallel.For(0, architectures.Count, new ParallelOptions { MaxDegreeOfParallelism = 2 }, i =>
        {
            using var audit = new KernelAudit(tools);
            rows[i] = audit.AuditAll(kernels, architectures[i]);
        });
        return rows.SelectMany(r => r).ToArray();
    }

    /// <summary>The main loop of each kernel as nvdisasm prints it, one instruction a line.</summary>
    private static void PrintMainLoops(CudaTools tools, IReadOnlyList<KernelEntry> kernels, IReadOnlyList<string> architectures)
    {
        using var audit = new KernelAudit(tools);
        foreach (string a in architectures)
        {
            foreach (var k in kernels)
            {
                SassListing listing;
                try
                {
                    listing = audit.Sass(k, a);
                }
                catch (PtxasException e)
                {
                    Console.WriteLine($"\n{k.Name} on {a}: {e.Message}");
                    continue;
                }
                Console.WriteLine();
                if (listing.MainLoop is not { } loop)
                {
                    Console.WriteLine($"{k.Name} on {a}: no loop ({listing.Instructions.Count} instructions, straight line)");
                    continue;
                }
                Console.WriteLine($"{k.Name} on {a}: main loop 0x{loop.Start:x4}-0x{loop.End:x4}, {loop.Body.Count} instructions");
                foreach (var i in loop.Body) Console.WriteLine($"  /*{i.Address:x4}*/ {i.Predicate,5} {i.Opcode} {i.Operands}".TrimEnd());
                // A reduction kernel's element loop can be smaller than its tree loop: list every loop in one line each.
                foreach (var other in listing.Loops.Where(l => l != loop))
                {
                    Console.WriteLine($"  other loop 0x{other.Start:x4}-0x{other.End:x4}: {other.Body.Count} instructions, {other.Count("FFMA")} FFMA, " +
                        $"{other.Body.Count(i => i.IsGlobal && i.IsLoad)} global loads, {other.Body.Count(i => i.IsShared)} shared accesses, " +
                        $"{other.Count("MUFU")} MUFU, {other.Count("CALL")} calls");
                }
            }
        }
    }

    private static void Print(CudaArchitectureLimits arch, IReadOnlyList<KernelAuditRow> rows)
    {
        Console.WriteLine();
        Console.WriteLine($"{arch.Name} ({arch.Card}): {arch.MaxWarpsPerSm} warps, {arch.MaxBlocksPerSm} blocks, {CudaArchitectureLimits.RegistersPerSm} registers, {arch.SharedPerSm / 1024} KiB shared per SM");
        Console.WriteLine($"{"kernel",-32} {"regs",4} {"smem",6} {"lmem",4} {"spill",5} {"group",7} {"occ",4} {"limit",-9} {"loop",5} {"fma%",5} {"ffma",4} {"hmma",4} {"fmul",4} {"LDS",-10} {"global ld",-12} {"global st",-10} faults");
        foreach (var x in rows)
        {
            var m = x.MainLoop;
            string group = x.GroupFromOccupancyApi ? $"{x.GroupSize}*" : $"{x.GroupSize}";
            Console.WriteLine(
                $"{x.Kernel,-32} {x.Registers,4} {x.StaticShared + x.DynamicShared,6} {x.LocalBytes,4} {x.SpillStores + x.SpillLoads,5} {group,7} " +
                $"{x.Occupancy.Fraction * 100,3:F0}% {Limiter(x.Occupancy.Limiter),-9} " +
                (m is null
                    ? $"{"-",5} {"",5} {"",4} {"",4} {"",4} {"",-10} {"",-12} {"",-10} "
                    : $"{m.Instructions,5} {m.MathShare * 100,4:F0}% {m.Ffma,4} {m.Hmma,4} {m.Fmul,4} {m.SharedLoads,-10} {m.GlobalLoads,-12} {m.GlobalStores,-10} ") +
                (x.Passed ? "" : string.Join("; ", x.Faults)));
        }
        Console.WriteLine("group: threads per group as launched on CUDA (* = chosen by CUDA's occupancy API, as ILGPU's auto-grouped launch does); " +
            "occ: theoretical occupancy; loop: instructions in the main loop (static count); fma%: FFMA+HMMA share of them.");
    }

    private static string Limiter(OccupancyLimiter l) => l switch
    {
        OccupancyLimiter.Warps => "warps",
        OccupancyLimiter.Registers => "registers",
        OccupancyLimiter.SharedMemory => "shared",
        _ => "blocks",
    };

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    internal static string ToJson(CudaTools tools, IReadOnlyList<KernelAuditRow> rows) =>
        JsonSerializer.Serialize(new { ptxas = tools.Version(), isa = KernelAudit.AuditIsa.ToString(), kernels = rows }, JsonOptions);
}
