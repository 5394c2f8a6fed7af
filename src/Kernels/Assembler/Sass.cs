using System.Globalization;
using System.Text.RegularExpressions;

namespace Engine.Kernels.Assembler;

/// <summary>One SASS instruction as nvdisasm prints it: address, opcode with its modifiers, operands, and a branch's target address.</summary>
public sealed record SassInstruction(int Address, string Opcode, string Operands, int? BranchTarget = null, string Predicate = "")
{
    /// <summary>The opcode without modifiers: "LDS" for "LDS.U.128".</summary>
    public string Base => Opcode.Split('.')[0];

    /// <summary>The modifiers after the base opcode.</summary>
    public IEnumerable<string> Modifiers => Opcode.Split('.').Skip(1);

    /// <summary>Shared-memory loads and stores.</summary>
    public bool IsShared => Base is "LDS" or "STS" or "LDSM";

    /// <summary>Loads and stores that go to global memory: generic (LD/ST, how ILGPU addresses views) or global (LDG/STG).</summary>
    public bool IsGlobal => Base is "LD" or "ST" or "LDG" or "STG";

    /// <summary>Local memory (the stack: spills, or arrays indexed at run time).</summary>
    public bool IsLocal => Base is "LDL" or "STL";

    public bool IsLoad => Base is "LD" or "LDG" or "LDS" or "LDSM" or "LDL";

    public bool IsStore => Base is "ST" or "STG" or "STS" or "STL";

    /// <summary>Bytes one thread moves with this load or store (4 unless a .64 or .128 modifier, or a narrower one, says otherwise).</summary>
    public int Width
    {
        get
        {
            foreach (string m in Modifiers)
            {
                switch (m)
                {
                    case "128": return 16;
                    case "64": return 8;
                    case "U8" or "S8": return 1;
                    case "U16" or "S16": return 2;
                }
            }
            return 4;
        }
    }

}

/// <summary>A loop in the SASS: the instructions from a backward branch's target up to the branch.</summary>
public sealed record SassLoop(int Start, int End, IReadOnlyList<SassInstruction> Body)
{
    public int Count(string baseOpcode) => Body.Count(i => i.Base == baseOpcode);

    /// <summary>Fused multiply-adds (FFMA) and tensor-core ops (HMMA): the useful arithmetic of a GEMM loop.</summary>
    public int MathCount => Count("FFMA") + Count("HMMA");

    /// <summary>Bytes moved per thread by the global loads and stores in the loop body (a static count).</summary>
    public int GlobalBytes => Body.Where(i => i.IsGlobal).Sum(i => i.Width);

    public bool Contains(SassLoop other) => other != this && Start <= other.Start && other.End <= End;
}

/// <summary>
/// The SASS of one kernel (nvdisasm -c of a cubin) parsed into instructions and loops, and the facts
/// that tell how fast its main loop can be.
/// </summary>
public sealed class SassListing
{
    private static readonly Regex Line = new(@"^\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);", RegexOptions.Compiled);
    private static readonly Regex Label = new(@"^\s*(\.L_[\w]+):", RegexOptions.Compiled);
    private static readonly Regex Target = new(@"`\((\.L_[\w]+)\)|\b0x([0-9a-f]+)\b", RegexOptions.Compiled);

    public SassListing(IReadOnlyList<SassInstruction> instructions)
    {
        Instructions = instructions;
        var loops = new List<SassLoop>();
        foreach (var branch in instructions)
        {
            // A branch to itself is the trap loop ptxas puts after the last EXIT, not a loop of the kernel.
            if (branch.BranchTarget is int target && target < branch.Address)
            {
                loops.Add(new SassLoop(target, branch.Address, instructions.Where(i => i.Address >= target && i.Address <= branch.Address).ToArray()));
            }
        }
        Loops = loops;
        MainLoop = loops
            .OrderByDescending(l => l.MathCount)
            .ThenBy(l => l.MathCount > 0 ? l.Body.Count : 0)
            .ThenByDescending(l => l.GlobalBytes)
            .ThenBy(l => l.Body.Count)
            .FirstOrDefault();
    }

    /// <summary>
    /// Parses the text nvdisasm -c prints for one function: instructions "/*addr*/ [@P] OPCODE operands ;" and
    /// labels ".L_x_N:" that name the next instruction's address; a BRA's target is a label or an address.
    /// Other lines are ignored.
    /// </summary>
    public static SassListing Parse(string text)
    {
        var raw = new List<(int Address, string Predicate, string Opcode, string Operands)>();
        var labels = new Dictionary<string, int>();
        var pending = new List<string>();
        foreach (string line in text.Split('\n'))
        {
            var label = Label.Match(line);
            if (label.Success)
            {
                pending.Add(label.Groups[1].Value);
                continue;
            }
            var m = Line.Match(line);
            if (!m.Success) continue;
            int address = int.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            foreach (string name in pending) labels[name] = address;
            pending.Clear();
            raw.Add((address, m.Groups[2].Value.Trim(), m.Groups[3].Value, m.Groups[4].Value.Trim()));
        }
        var list = raw.Select(r => new SassInstruction(r.Address, r.Opcode, r.Operands,
            r.Opcode.Split('.')[0] == "BRA" ? ResolveTarget(r.Operands, labels) : null, r.Predicate)).ToArray();
        return new SassListing(list);
    }

    private static int? ResolveTarget(string operands, Dictionary<string, int> labels)
    {
        var m = Target.Match(operands);
        if (!m.Success) return null;
        if (m.Groups[1].Success) return labels.TryGetValue(m.Groups[1].Value, out int a) ? a : null;
        return int.Parse(m.Groups[2].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }

    public IReadOnlyList<SassInstruction> Instructions { get; }

    public IReadOnlyList<SassLoop> Loops { get; }

    /// <summary>
    /// The loop that does the kernel's work: the innermost loop holding the most FFMA and HMMA (a GEMM's
    /// k-loop, not the slab loop around it that also stages operands); in kernels without them, the loop
    /// that moves the most global bytes (a grid-stride loop's vector body rather than its scalar tail);
    /// null for straight-line kernels.
    /// </summary>
    public SassLoop? MainLoop { get; }

    public int Count(string baseOpcode) => Instructions.Count(i => i.Base == baseOpcode);
}
