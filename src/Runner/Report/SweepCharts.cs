using Engine.Runner.Sweep;
using ScottPlot;
using static System.FormattableString;

namespace Engine.Runner.Report;

/// <summary>
/// <c>engine sweep</c>'s two charts against link bandwidth (log scale): DDP's step time, and the share
/// of its all-reduce hidden behind backward; one colour per bucket cap, measured as solid lines with
/// markers, the scaling model's prediction dashed.
/// </summary>
public static class SweepCharts
{
    public const string StepChart = "sweep_step.png";
    public const string HiddenChart = "sweep_hidden.png";

    private static readonly Color[] Palette = [Color.FromHex("#1f77b4"), Color.FromHex("#d62728"), Color.FromHex("#2ca02c"), Color.FromHex("#9467bd"), Color.FromHex("#ff7f0e")];

    /// <summary>Writes both charts into <paramref name="dir"/> (created when missing); returns their paths.</summary>
    public static IReadOnlyList<string> Write(SweepResult r, string dir)
    {
        string root = Directory.CreateDirectory(dir).FullName;
        var written = new List<string>();
        foreach (var (name, plot) in new[] { (StepChart, StepTime(r)), (HiddenChart, HiddenFraction(r)) })
        {
            string path = Path.Combine(root, name);
            plot.SavePng(path, ReportWriter.ChartWidth, ReportWriter.ChartHeight);
            written.Add(path);
        }
        return written;
    }

    public static Plot StepTime(SweepResult r)
        => Draw(r, "DDP step time against link bandwidth", "ms per step", p => 1000 * p.StepSeconds, p => 1000 * p.PredictedStepSeconds, Alignment.UpperRight);

    public static Plot HiddenFraction(SweepResult r)
        => Draw(r, "Share of DDP's all-reduce hidden behind backward", "hidden / (hidden + exposed)", p => p.HiddenFraction, p => p.PredictedHiddenFraction, Alignment.UpperLeft);

    /// <param name="legend">Where the legend goes: the corner the curves leave free.</param>
    private static Plot Draw(SweepResult r, string title, string yLabel, Func<SweepPoint, double> measured, Func<SweepPoint, double> predicted, Alignment legend)
    {
        var plot = new Plot();
        plot.Title(Invariant($"{title}\n({r.Nodes} emulated nodes, {r.Model})"), size: 16);
        plot.XLabel("link bandwidth (Mbit/s, log scale)", size: 14);
        plot.YLabel(yLabel, size: 14);
        var groups = r.Points.GroupBy(p => p.BucketMb).ToList();
        for (int g = 0; g < groups.Count; g++)
        {
            SweepPoint[] points = groups[g].OrderBy(p => p.LinkMbit).ToArray();
            double[] xs = points.Select(p => Math.Log10(p.LinkMbit)).ToArray();
            Color color = Palette[g % Palette.Length];
            var line = plot.Add.Scatter(xs, points.Select(measured).ToArray(), color);
            line.LineWidth = 2;
            line.MarkerSize = 8;
            line.LegendText = Invariant($"measured, bucket cap {groups[g].Key:0.####} MiB ({points[0].Buckets} bucket(s))");
            var model = plot.Add.Scatter(xs, points.Select(predicted).ToArray(), color);
            model.LinePattern = LinePattern.Dashed;
            model.MarkerSize = 0;
            model.LegendText = Invariant($"model, bucket cap {groups[g].Key:0.####} MiB");
        }
        double[] rates = r.Points.Select(p => p.LinkMbit).Distinct().OrderBy(x => x).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(rates.Select(Math.Log10).ToArray(), rates.Select(x => Invariant($"{x:G4}")).ToArray());
        plot.Axes.Bottom.TickLabelStyle.FontSize = 13;
        plot.Axes.Left.TickLabelStyle.FontSize = 13;
        double top = r.Points.Count == 0 ? 1 : r.Points.Max(p => Math.Max(measured(p), predicted(p)));
        // Room above the curves for the legend (two lines per bucket cap).
        // A little below zero, so that a line at zero (nothing hidden) is not drawn over by the axis.
        double height = top > 0 ? top : 1;
        plot.Axes.SetLimitsY(-0.04 * height, height * (1.1 + 0.12 * 2 * groups.Count));
        plot.Legend.FontSize = 12;
        plot.ShowLegend(legend);
        return plot;
    }
}
