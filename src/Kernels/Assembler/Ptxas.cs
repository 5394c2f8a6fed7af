using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Engine.Kernels.Assembler;

/// <summary>What ptxas -v says of one kernel, and its SASS.</summary>
/// <param name="Registers">Registers per thread.</param>
/// <param name="StaticShared">Shared memory declared in the kernel, bytes per block.</param>
/// <param name="LocalBytes">Local memory per thread (lmem): a stack frame, spills, arrays indexed at run time.</param>
/// <param name="StackFrame">Stack frame bytes per thread.</param>
/// <param name="SpillStores">Bytes of register spill stores.</param>
/// <param name="SpillLoads">Bytes of register spill loads.</param>
/// <param name="Sass">The assembled code.</param>
public sealed record AssembledKernel(int Registers, int StaticShared, int LocalBytes, int StackFrame, int SpillStores, int SpillLoads, SassListing Sass);

/// <summary>ptxas refused the PTX (or a tool failed): the message is the assembler's.</summary>
public sealed class PtxasException(string message) : Exception(message);

/// <summary>
/// Runs NVIDIA's assembler on kernels' PTX, as the CUDA driver does when a kernel is loaded, and disassembles
/// the result. Kernels are assembled together, one module per architecture: ptxas compiles every entry of a
/// module on its own (an entry's registers and code do not depend on its neighbours), and starting the tools
/// once instead of once per kernel is what makes a whole-engine check take seconds rather than minutes.
/// </summary>
public static class Ptxas
{
    private static readonly Regex Header = new(@"^\s*\.(version|target|address_size)\b.*$", RegexOptions.Multiline);

    /// <summary>Assembles one kernel's PTX for <paramref name="architecture"/> (e.g. "sm_90").</summary>
    /// <exception cref="PtxasException">ptxas rejected the PTX; the message quotes it.</exception>
    public static AssembledKernel Assemble(CudaTools tools, string entry, string ptx, string architecture, int? maxRegisters = null) =>
        AssembleModule(tools, [(entry, ptx)], architecture, maxRegisters)[entry];

    /// <summary>
    /// Assembles several kernels' PTX (each a whole module as ILGPU writes it, with entry <c>entry</c>) as one
    /// module for <paramref name="architecture"/>, optionally capping registers per thread as a launch bound
    /// would (tests use it to provoke spills). Returns each entry's resources and SASS.
    /// </summary>
    /// <exception cref="PtxasException">ptxas rejected the module; the message quotes it.</exception>
    public static IReadOnlyDictionary<string, AssembledKernel> AssembleModule(
        CudaTools tools, IReadOnlyList<(string Entry, string Ptx)> kernels, string architecture, int? maxRegisters = null)
    {
        ArgumentNullException.ThrowIfNull(tools);
        ArgumentNullException.ThrowIfNull(kernels);
        if (kernels.Count == 0) return new Dictionary<string, AssembledKernel>();
        var module = new StringBuilder();
        foreach (Match m in Header.Matches(kernels[0].Ptx)) module.AppendLine(m.Value.Trim());
        foreach (var (_, ptx) in kernels) module.AppendLine(Header.Replace(ptx, ""));

        string dir = Directory.CreateTempSubdirectory("engine-ptxas-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "kernels.ptx"), module.ToString());
            var args = new List<string> { $"-arch={architecture}", "-v", "-o", "kernels.cubin", "kernels.ptx" };
            if (maxRegisters is int max) args.InsertRange(0, ["-maxrregcount", max.ToString(CultureInfo.InvariantCulture)]);
            string stdout = CudaTools.Run(tools.Ptxas, args, dir, out var result);
            string log = stdout + result.Error;
            if (result.ExitCode != 0)
            {
                throw new PtxasException($"ptxas -arch={architecture} failed (exit {result.ExitCode}): {log.Trim()}");
            }
            string sass = CudaTools.Run(tools.Nvdisasm, ["-c", "kernels.cubin"], dir, out var dump);
            if (dump.ExitCode != 0)
            {
                throw new PtxasException($"nvdisasm failed (exit {dump.ExitCode}): {dump.Error.Trim()}");
            }
            var resources = ParseLog(log);
            var listings = SplitFunctions(sass);
            var assembled = new Dictionary<string, AssembledKernel>();
            foreach (var (entry, _) in kernels)
            {
                if (!resources.TryGetValue(entry, out var r) || !listings.TryGetValue(entry, out string? code))
                {
                    throw new PtxasException($"ptxas -arch={architecture} reported nothing for entry {entry}: {log.Trim()}");
                }
                assembled[entry] = r with { Sass = SassListing.Parse(code) };
            }
            return assembled;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>The -v report, per function: "Function properties for F" opens a function's lines, "Used N registers" closes them.</summary>
    internal static Dictionary<string, AssembledKernel> ParseLog(string log)
    {
        var result = new Dictionary<string, AssembledKernel>();
        string? current = null;
        var stack = (Frame: 0, Stores: 0, Loads: 0);
        foreach (string line in log.Split('\n'))
        {
            var opened = Regex.Match(line, @"(?:Compiling entry function|Function properties for) '?([A-Za-z_][\w$]*)'?");
            if (opened.Success)
            {
                current = opened.Groups[1].Value;
            }
            var frame = Regex.Match(line, @"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads");
            if (frame.Success)
            {
                stack = (Int(frame, 1), Int(frame, 2), Int(frame, 3));
            }
            if (current is not null && Regex.IsMatch(line, @"Used \d+ registers"))
            {
                result[current] = new AssembledKernel(Number(line, @"Used (\d+) registers"), Number(line, @"(\d+) bytes smem"),
                    Number(line, @"(\d+) bytes lmem"), stack.Frame, stack.Stores, stack.Loads, new SassListing([]));
                current = null;
                stack = default;
            }
        }
        return result;
    }

    /// <summary>nvdisasm's listing cut at each function's ".text.F:" section label.</summary>
    private static Dictionary<string, string> SplitFunctions(string sass)
    {
        var result = new Dictionary<string, string>();
        var headers = Regex.Matches(sass, @"^\.text\.(\S+):", RegexOptions.Multiline);
        for (int i = 0; i < headers.Count; i++)
        {
            int start = headers[i].Index, end = i + 1 < headers.Count ? headers[i + 1].Index : sass.Length;
            result[headers[i].Groups[1].Value] = sass[start..end];
        }
        return result;
    }

    private static int Int(Match m, int group) => int.Parse(m.Groups[group].Value, CultureInfo.InvariantCulture);

    private static int Number(string text, string pattern)
    {
        var m = Regex.Match(text, pattern);
        return m.Success ? Int(m, 1) : 0;
    }
}
