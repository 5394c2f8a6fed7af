using Engine.Runner.Compare;

namespace Engine.Runner.Report;

/// <summary>
/// <c>engine compare --report DIR</c>: a folder a reader can open without the engine: report.md (the
/// seed's table, each mode's step breakdown, why DP and DDP differ here), four PNG charts, and copies
/// of any trace files the run wrote.
/// </summary>
public static class ReportWriter
{
    public const string Markdown = "report.md";
    public const string EpochTimeChart = "epoch_time.png";
    public const string PhasesChart = "phases.png";
    public const string BytesChart = "bytes.png";
    public const string OverlapChart = "ddp_overlap.png";
    public const string MemoryChart = "memory.png";

    /// <summary>Every chart is this size in pixels.</summary>
    public const int ChartWidth = 800, ChartHeight = 500;

    /// <summary>
    /// Writes DIR/report.md, DIR/epoch_time.png, DIR/phases.png, DIR/bytes.png, DIR/ddp_overlap.png, DIR/memory.png and
    /// copies each trace into DIR. DIR is created when missing. Returns the paths written.
    /// </summary>
    public static IReadOnlyList<string> Write(ComparisonResult comparison, string dir, IEnumerable<string>? traces = null)
    {
        ArgumentNullException.ThrowIfNull(comparison);
        if (string.IsNullOrWhiteSpace(dir)) throw new ArgumentException("report: no folder given for the report (--report DIR).", nameof(dir));
        Validate(comparison);
        var traceList = (traces ?? Array.Empty<string>()).ToList();
        foreach (string t in traceList)
        {
            if (!File.Exists(t)) throw new FileNotFoundException($"report: trace file '{t}' does not exist.", t);
        }

        string root = CreateFolder(dir);
        var written = new List<string>();

        var copied = CopyTraces(traceList, root);
        string md = Path.Combine(root, Markdown);
        AtomicFile.WriteAllText(md, ReportText.Build(comparison, copied.Select(Path.GetFileName).ToList()!));
        written.Add(md);

        foreach (var (name, chart) in new (string, Func<ComparisonResult, ScottPlot.Plot>)[]
        {
            (EpochTimeChart, ReportCharts.EpochTime),
            (PhasesChart, ReportCharts.Phases),
            (BytesChart, ReportCharts.Bytes),
            (OverlapChart, ReportCharts.Overlap),
            (MemoryChart, ReportCharts.Memory),
        })
        {
            if (name == MemoryChart && !comparison.Modes.Any(m => m.Run.Memory is { Count: > 0 })) continue; // results from before memory was counted
            string path = Path.Combine(root, name);
            ScottPlot.Plot plot = chart(comparison);
            plot.SavePng(path, ChartWidth, ChartHeight);
            written.Add(path);
        }
        written.AddRange(copied);
        return written;
    }

    private static void Validate(ComparisonResult c)
    {
        if (c.Modes is null || c.Modes.Count == 0) throw new ArgumentException("report: the comparison has no modes.", "comparison");
        foreach (ModeResult m in c.Modes)
        {
            if (m.Run?.Breakdown is null) throw new ArgumentException($"report: mode '{m.Mode}' has no step breakdown.", "comparison");
            foreach (string phase in PhaseClock.Phases)
            {
                if (!m.Run.Breakdown.Phases.ContainsKey(phase))
                    throw new ArgumentException($"report: mode '{m.Mode}' has no '{phase}' phase in its breakdown.", "comparison");
            }
        }
    }

    private static string CreateFolder(string dir)
    {
        try
        {
            return Directory.CreateDirectory(dir).FullName;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new IOException($"report: cannot create the report folder '{dir}': {e.Message}", e);
        }
    }

    /// <summary>Copies each trace into the folder under its own name (prefixed by its position when two share a name).</summary>
    private static List<string> CopyTraces(List<string> traces, string root)
    {
        var copied = new List<string>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < traces.Count; i++)
        {
            string source = Path.GetFullPath(traces[i]);
            string name = Path.GetFileName(source);
            if (!names.Add(name))
            {
                name = $"{i}_{name}";
                names.Add(name);
            }
            string target = Path.Combine(root, name);
            if (!string.Equals(source, target, StringComparison.Ordinal)) File.Copy(source, target, overwrite: true);
            copied.Add(target);
        }
        return copied;
    }
}
