using Engine.Comm;
using Engine.Runner.Report;
using Engine.Runner.Sweep;
using Engine.Runner.Training;
using SkiaSharp;

namespace Engine.Runner.Tests;

/// <summary><c>engine sweep</c>'s pure parts: a point from two runs, the default caps, the charts, and its refusals.</summary>
public sealed class SweepTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), $"engine-sweep-tests-{Guid.NewGuid():N}");

    public SweepTests() => Directory.CreateDirectory(_root);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private const long Parameters = 45_102; // resnet18 width 4: 180,408 gradient bytes

    private static RunResult Run(string mode, int devices, double[] ms, double hiddenMs, double bucketMb = 25, bool noOverlap = false)
    {
        var phases = SeedPhases.Of(ms);
        var b = new Breakdown(mode, devices, true, 4, ms.Sum() / 1000, phases, hiddenMs / 1000) { GradientBuckets = mode == "ddp" ? 3 : 0 };
        var options = new TrainOptions { Mode = Engine.Runner.Training.TrainingMode.Parse(mode), Device = "cpu", Model = "resnet18", Width = 4, BatchSize = 32, BucketMb = bucketMb, NoOverlap = noOverlap };
        var epochs = new List<EpochResult> { new(1, ms.Sum() / 250, 2.3, 0.1, null, 4, 100) };
        return new RunResult(options, "cpu", "synthetic", Parameters, epochs) { Breakdown = b };
    }

    //                                   data h2d scatter replicate forward gather loss backward grad_sync optimizer
    private static readonly double[] SingleMs = [5, 1, 0, 0, 30, 0, 1, 60, 0, 3];

    private static SweepResult Example()
    {
        RunResult single = Run("single", 1, SingleMs, 0);
        var points = new List<SweepPoint>();
        foreach (double cap in new[] { 0.05, 25 })
        {
            foreach (string link in new[] { "2mbit", "8mbit", "32mbit" })
            {
                double sync = 180.0 / LinkRate.Parse(link).BitsPerSecond * 8e6;
                double hidden = cap < 1 ? Math.Min(100, sync / 2) : 0;
                points.Add(LinkSweep.Point(single, Run("ddp", 2, [5, 1, 0, 1, 60, 0, 1, 120, sync - hidden, 3], hidden, cap), 2, LinkRate.Parse(link), cap));
            }
        }
        return new SweepResult(2, "resnet18 width 4", Parameters, single, points);
    }

    [Fact]
    public void A_point_holds_the_runs_measurement_beside_the_models_prediction_for_the_same_link()
    {
        RunResult single = Run("single", 1, SingleMs, 0);
        RunResult ddp = Run("ddp", 2, [5, 1, 0, 1, 60, 0, 1, 120, 40, 3], 120, bucketMb: 0.05, noOverlap: true);
        SweepPoint p = LinkSweep.Point(single, ddp, 2, LinkRate.Parse("8mbit"), 0.05);

        Assert.Equal(("8mbit", 8.0, 0.05, 3), (p.Link, p.LinkMbit, p.BucketMb, p.Buckets));
        Assert.Equal(0.231, p.StepSeconds, 9);
        Assert.Equal((0.12, 0.04, 0.12), (p.BackwardSeconds, p.ExposedSeconds, p.HiddenSeconds));
        Assert.Equal(0.75, p.HiddenFraction, 9);
        // The run had overlap off, so the model sends every bucket after backward, back to back: 180,408
        // bytes at TCP's share of 1 MB/s after one 62.7 KB burst of the shaper.
        Assert.Equal((180_408 - 64 * 1024 * 1448.0 / 1514) / (1e6 * 1448 / 1514), p.PredictedExposedSeconds, 6);
        Assert.Equal(0, p.PredictedHiddenSeconds);
        Assert.Equal(0, p.PredictedHiddenFraction);
    }

    [Fact]
    public void The_default_caps_are_compares_overlap_cap_and_the_given_one()
    {
        // 180,408 bytes = 0.172 MiB fit the first bucket: compare cuts them into 4 caps of 0.043 MiB.
        Assert.Equal(new[] { 180_408 / 1048576.0 / 4, 25 }, LinkSweep.DefaultBuckets(Parameters, 25));
        Assert.Equal(new[] { 25.0 }, LinkSweep.DefaultBuckets(21_289_802, 25)); // ResNet-34 needs no cut
    }

    [Fact]
    public void The_table_has_a_row_per_point_with_measured_and_predicted_values()
    {
        string table = LinkSweep.Table(Example());
        string[] rows = table.Split('\n').Where(l => l.StartsWith("| ", StringComparison.Ordinal) && !l.StartsWith("| link", StringComparison.Ordinal) && !l.StartsWith("| ---", StringComparison.Ordinal)).ToArray();
        Assert.Equal(6, rows.Length);
        Assert.StartsWith("| 2mbit | 0.05 | 3 | ", rows[0]);
        Assert.Contains("| 0.14 (", rows[0]); // 720 ms of all-reduce at 2mbit, 100 ms of it hidden
    }

    [Theory]
    [InlineData(SweepCharts.StepChart)]
    [InlineData(SweepCharts.HiddenChart)]
    public void Both_charts_are_pngs_of_the_agreed_size_with_a_line_per_cap(string chart)
    {
        IReadOnlyList<string> written = SweepCharts.Write(Example(), _root);
        Assert.Equal(new[] { SweepCharts.StepChart, SweepCharts.HiddenChart }.Select(f => Path.Combine(_root, f)), written);
        using SKBitmap bitmap = SKBitmap.Decode(Path.Combine(_root, chart));
        Assert.Equal((ReportWriter.ChartWidth, ReportWriter.ChartHeight), (bitmap.Width, bitmap.Height));
        int Count(string hex)
        {
            SKColor c = SKColor.Parse(hex);
            int n = 0;
            for (int y = 0; y < bitmap.Height; y++)
                for (int x = 0; x < bitmap.Width; x++)
                    if (bitmap.GetPixel(x, y) == c) n++;
            return n;
        }
        Assert.True(Count("#1f77b4") > 300, "no line of the first cap");
        Assert.True(Count("#d62728") > 300, "no line of the second cap");
    }
}

[Collection("console")]
public class SweepOptionTests
{
    [Theory]
    [InlineData("at least 2", "sweep", "--emulate-nodes", "1")]
    [InlineData("--link 'fast'", "sweep", "--links", "2mbit,fast")]
    [InlineData("--bucket-caps: '0'", "sweep", "--bucket-caps", "0.05,0")]
    public void Refused_up_front_in_one_line(string expected, params string[] args)
    {
        var (code, _, err) = Cli.Run(args);
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
