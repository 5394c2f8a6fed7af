using Engine.Runner.Compare;
using Engine.Runner.Report;
using Engine.Runner.Training;
using SkiaSharp;

namespace Engine.Runner.Tests;

/// <summary>
/// <c>engine compare --report DIR</c>: report.md carries the seed's table, every phase and the
/// explanation; every chart is a real, readable PNG of the agreed size; the shared-device note
/// appears exactly when replicas shared a device; traces are copied; bad folders fail clearly.
/// </summary>
public sealed class ReportTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"engine-report-tests-{Guid.NewGuid():N}");

    public ReportTests() => Directory.CreateDirectory(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private const long Parameters = 21_289_802;

    /// <summary>Phase milliseconds per step in <see cref="PhaseClock.Phases"/> order, and bytes per step.</summary>
    private static Breakdown MakeBreakdown(string mode, int devices, bool shared, double[] ms, long[] bytes, double hiddenMs)
    {
        var phases = SeedPhases.Of(ms, bytes);
        return new Breakdown(mode, devices, shared, 98, ms.Sum() / 1000, phases, hiddenMs / 1000);
    }

    private static ModeResult MakeMode(string mode, int devices, double[] epochSeconds, double? speedup, Breakdown b)
    {
        var options = new TrainOptions { Mode = TrainingMode.Parse(mode), Device = devices > 1 ? "cuda:0,cuda:1" : "cuda:0", Epochs = epochSeconds.Length };
        var epochs = epochSeconds.Select((s, i) => new EpochResult(i + 1, s, 1.5 - 0.3 * i, 0.4 + 0.1 * i, null, 98, 50_000 / s)).ToList();
        // Model state as the ZeRO formulas give it for DDP (12 bytes per parameter), activations beside it.
        var memory = Enumerable.Range(0, mode == "single" ? 1 : devices)
            .Select(r => new RankMemory(r, 4 * Parameters, 4 * Parameters, 4 * Parameters, mode == "dp" && r == 0 ? 4 * Parameters : 0, 900L << 20, 1200L << 20)).ToList();
        var run = new RunResult(options, devices > 1 ? "2x H100" : "H100", "cifar10", Parameters, epochs) { Breakdown = b, Memory = memory };
        return new ModeResult(mode, devices, run.MeanEpochSeconds, speedup, speedup / devices, run);
    }

    /// <summary>Three modes shaped like the seed's ResNet-34 table (6.302 s, 12.460 s, 3.282 s).</summary>
    internal static ComparisonResult Example(bool shared = false)
    {
        const long image = 3 * 32 * 32 * sizeof(float) + sizeof(int), weights = Parameters * sizeof(float), buffers = 8_512 * sizeof(float);
        const long logits = 512 * 10 * sizeof(float);
        //                                data  h2d  scatter replicate forward gather loss backward grad_sync optimizer
        var single = MakeBreakdown("single", 1, false, new[] { 3.0, 1.0, 0, 0, 18.0, 0, 0.3, 38.0, 0, 3.7 },
            new long[] { 0, 512 * image, 0, 0, 0, 0, 0, 0, 0, 0 }, 0);
        var dp = MakeBreakdown("dp", 2, shared, new[] { 6.0, 2.0, 6.0, 38.0, 52.0, 1.5, 0.5, 99.3, 45.0, 3.7 },
            new long[] { 0, 1024 * image, 512 * image + logits, weights + buffers, 0, logits, 0, 0, weights, 0 }, 0);
        var ddp = MakeBreakdown("ddp", 2, shared, new[] { 3.0, 1.0, 0, 0.2, 18.5, 0, 0.3, 39.0, 1.3, 3.7 },
            new long[] { 0, 512 * image, 0, buffers, 0, 0, 0, 0, weights, 0 }, 9.5);
        var modes = new List<ModeResult>
        {
            MakeMode("single", 1, new[] { 6.402, 6.202 }, null, single),
            MakeMode("dp", 2, new[] { 12.560, 12.360 }, 6.302 / 12.460, dp),
            MakeMode("ddp", 2, new[] { 3.382, 3.182 }, 6.302 / 3.282, ddp),
        };
        return new ComparisonResult(modes, Comparison.Explain(modes));
    }

    /// <summary>
    /// Each mode's sentence comes from its entry in the mode table and quotes its own run: DP its replicate and gradient
    /// bytes, DDP its gradient bytes and hidden and exposed all-reduce with the model state per rank; a mode this build
    /// does not know (a result file from another) still gets a line, under its name.
    /// </summary>
    [Fact]
    public void Explanation_quotes_each_modes_own_numbers()
    {
        var c = Example();
        Assert.Equal(c.Modes.Count + 1, c.Explanation.Count); // one line per mode, then DP against DDP
        Assert.StartsWith("- Single device: the step is the model's compute plus loading the batch.", c.Explanation[0]);
        Assert.Contains("DP over 2 devices:", c.Explanation[1]);
        Assert.Contains("(81.2 MB), gathers the outputs", c.Explanation[1]); // replicate: weights + buffers
        Assert.Contains("DDP over 2 ranks:", c.Explanation[2]);
        Assert.Contains("81.2 MB per rank per step in the ring all-reduce", c.Explanation[2]);
        Assert.Contains("(9.5 ms of all-reduce hidden behind backward, 1.3 ms exposed after it); it holds 243.6 MB of parameters, gradients and momentum per rank", c.Explanation[2]);

        var renamed = c.Modes[2] with { Mode = "ddp-from-elsewhere" };
        Assert.StartsWith("- ddp-from-elsewhere over 2 devices. Outside compute", Assert.Single(Comparison.Explain([renamed])));
    }

    [Fact]
    public void MarkdownHasTheSeedTableEveryPhaseAndTheExplanation()
    {
        ComparisonResult c = Example();
        string dir = Path.Combine(_root, "nested", "report");
        IReadOnlyList<string> written = ReportWriter.Write(c, dir);

        string md = File.ReadAllText(Path.Combine(dir, ReportWriter.Markdown));
        Assert.Contains("| Single | 6.302 s | - | - |", md);
        Assert.Contains("| DP | 12.460 s | 0.51x (slower) | 25% (inefficient) |", md);
        Assert.Contains("| DDP | 3.282 s | 1.92x (faster) | 96% (efficient) |", md);
        foreach (string phase in PhaseClock.Phases) Assert.Contains($"| {phase} |", md);
        foreach (string line in c.Explanation) Assert.Contains(line, md);
        Assert.Contains("## Why DP is slower than DDP here", md);
        Assert.Contains("## How DP and DDP communicate", md);
        // The teaching section quotes this run's numbers: DP's traffic, DDP's ring share, hidden vs exposed.
        Assert.Contains("254.0 ms", md);
        Assert.Contains("2(2-1)/2 x 81.2 MB = 81.2 MB per rank per step", md);
        Assert.Contains("9.5 ms ran hidden behind backward and 1.3 ms was exposed", md);
        Assert.Contains("88% hidden", md);
        foreach (string chart in new[] { ReportWriter.EpochTimeChart, ReportWriter.PhasesChart, ReportWriter.BytesChart, ReportWriter.OverlapChart, ReportWriter.MemoryChart })
        {
            Assert.Contains($"]({chart})", md);
        }
        // Memory per rank: the table, and 12 bytes of model state per parameter for every mode here.
        Assert.Contains("## Memory per rank", md);
        Assert.Contains("| model state per parameter | 12.00 B | 12.00 B | 12.00 B |", md);

        var expected = new[] { ReportWriter.Markdown, ReportWriter.EpochTimeChart, ReportWriter.PhasesChart, ReportWriter.BytesChart, ReportWriter.OverlapChart, ReportWriter.MemoryChart };
        Assert.Equal(expected.Select(f => Path.Combine(Path.GetFullPath(dir), f)), written);
    }

    [Fact]
    public void TheModelsPredictionStandsBesideEachMeasuredPhase()
    {
        string dir = Path.Combine(_root, "model");
        ReportWriter.Write(Example() with { DdpLink = "8mbit" }, dir);
        string md = File.ReadAllText(Path.Combine(dir, ReportWriter.Markdown));
        Assert.Contains("## The scaling model beside this run", md);
        Assert.Contains("DDP's ranks over emulated link 8mbit (tbf)", md);
        Assert.Contains("engine model --from compare.json --link 8mbit", md);
        // One table per parallel mode, each with predicted and measured columns and a row per phase.
        Assert.Equal(2, md.Split('\n').Count(l => l.StartsWith("| Phase ", StringComparison.Ordinal) && l.Contains("Predicted ms") && l.Contains("Measured ms")));
        // DDP's exposed all-reduce is measured at 1.3 ms in the example; 81.2 MB over 1 MB/s is predicted at over a minute.
        string sync = md.Split('\n').Where(l => l.StartsWith("| grad_sync ", StringComparison.Ordinal)).Last();
        Assert.Contains("1.300", sync);
        Assert.True(double.Parse(sync.Split('|')[2], System.Globalization.CultureInfo.InvariantCulture) > 60_000, sync);
    }

    [Theory]
    [InlineData(ReportWriter.EpochTimeChart, "#1f77b4")] // DDP's column
    [InlineData(ReportWriter.PhasesChart, "#2ca02c")] // backward
    [InlineData(ReportWriter.BytesChart, "#d62728")] // replicate
    [InlineData(ReportWriter.OverlapChart, "#2ca02c")] // hidden all-reduce
    [InlineData(ReportWriter.MemoryChart, "#1f77b4")] // parameters
    public void ChartsAreNonTrivialPngsOfTheAgreedSize(string chart, string seriesColor)
    {
        string dir = Path.Combine(_root, "charts");
        ReportWriter.Write(Example(), dir);
        string path = Path.Combine(dir, chart);

        byte[] file = File.ReadAllBytes(path);
        Assert.True(file.Length > 10_000, $"{chart} is only {file.Length} bytes");
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, file[..8]);

        using SKBitmap bitmap = SKBitmap.Decode(path);
        Assert.NotNull(bitmap);
        Assert.Equal(ReportWriter.ChartWidth, bitmap.Width);
        Assert.Equal(ReportWriter.ChartHeight, bitmap.Height);

        var counts = new Dictionary<SKColor, int>();
        for (int y = 0; y < bitmap.Height; y++)
            for (int x = 0; x < bitmap.Width; x++)
            {
                SKColor p = bitmap.GetPixel(x, y);
                counts[p] = counts.GetValueOrDefault(p) + 1;
            }
        int pixels = bitmap.Width * bitmap.Height;
        Assert.True(counts.Count > 30, $"{chart} has only {counts.Count} distinct colours");
        Assert.True(counts.Values.Max() < 0.9 * pixels, $"{chart} is mostly one colour");
        SKColor series = SKColor.Parse(seriesColor);
        Assert.True(counts.GetValueOrDefault(series) > 500, $"{chart} has {counts.GetValueOrDefault(series)} pixels of its series colour {seriesColor}");
        // Text (title, axis labels, legend) is drawn in near-black.
        int dark = counts.Where(kv => kv.Key.Red < 80 && kv.Key.Green < 80 && kv.Key.Blue < 80).Sum(kv => kv.Value);
        Assert.True(dark > 1_000, $"{chart} has only {dark} dark (text) pixels");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void SharedDeviceNoteAppearsExactlyWhenReplicasSharedADevice(bool shared)
    {
        string dir = Path.Combine(_root, $"shared-{shared}");
        ReportWriter.Write(Example(shared), dir);
        string md = File.ReadAllText(Path.Combine(dir, ReportWriter.Markdown));
        Assert.Equal(shared, md.Contains(ReportText.SharedDeviceNote, StringComparison.Ordinal));
        Assert.Equal(shared, md.Contains("What the breakdown still shows", StringComparison.Ordinal));
    }

    [Fact]
    public void TracesAreCopiedAndListed()
    {
        string a = Path.Combine(_root, "rank0", "trace.json"), b = Path.Combine(_root, "rank1", "trace.json");
        Directory.CreateDirectory(Path.GetDirectoryName(a)!);
        Directory.CreateDirectory(Path.GetDirectoryName(b)!);
        File.WriteAllText(a, "{\"traceEvents\":[0]}");
        File.WriteAllText(b, "{\"traceEvents\":[1]}");
        string dir = Path.Combine(_root, "with-traces");

        IReadOnlyList<string> written = ReportWriter.Write(Example(), dir, new[] { a, b });

        string first = Path.Combine(Path.GetFullPath(dir), "trace.json"), second = Path.Combine(Path.GetFullPath(dir), "1_trace.json");
        Assert.Equal(File.ReadAllText(a), File.ReadAllText(first));
        Assert.Equal(File.ReadAllText(b), File.ReadAllText(second));
        Assert.Contains(first, written);
        Assert.Contains(second, written);
        string md = File.ReadAllText(Path.Combine(dir, ReportWriter.Markdown));
        Assert.Contains("[trace.json](trace.json)", md);
        Assert.Contains("[1_trace.json](1_trace.json)", md);
    }

    [Fact]
    public void MissingTraceFailsBeforeAnythingIsWritten()
    {
        string dir = Path.Combine(_root, "never");
        var e = Assert.Throws<FileNotFoundException>(() => ReportWriter.Write(Example(), dir, new[] { Path.Combine(_root, "nope.json") }));
        Assert.Contains("nope.json", e.Message);
        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public void UncreatableOrMissingFolderGivesAClearError()
    {
        string file = Path.Combine(_root, "a-file");
        File.WriteAllText(file, "x");
        var e = Assert.Throws<IOException>(() => ReportWriter.Write(Example(), Path.Combine(file, "report")));
        Assert.Contains("cannot create the report folder", e.Message);
        Assert.Contains(file, e.Message);

        var empty = Assert.Throws<ArgumentException>(() => ReportWriter.Write(Example(), " "));
        Assert.Contains("no folder given", empty.Message);
    }

    [Fact]
    public void ModeWithoutBreakdownIsRejected()
    {
        ComparisonResult c = Example();
        ModeResult broken = c.Modes[1] with { Run = c.Modes[1].Run with { Breakdown = null } };
        var bad = c with { Modes = new[] { c.Modes[0], broken, c.Modes[2] } };
        var e = Assert.Throws<ArgumentException>(() => ReportWriter.Write(bad, Path.Combine(_root, "bad")));
        Assert.Contains("'dp' has no step breakdown", e.Message);
    }
}
