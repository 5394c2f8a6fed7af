using Engine.Runner.Compare;
using Engine.Runner.Training;
using ScottPlot;
using static System.FormattableString;

namespace Engine.Runner.Report;

/// <summary>The report's four charts, one mode per bar group, mode names on the x axis, units on the y axis.</summary>
internal static class ReportCharts
{
    /// <summary>One colour per phase, the same in every chart; communication phases in warm colours, compute in cool ones.</summary>
    private static readonly Dictionary<string, Color> PhaseColor = new()
    {
        ["data"] = Color.FromHex("#7f7f7f"),
        ["h2d"] = Color.FromHex("#8c564b"),
        ["scatter"] = Color.FromHex("#ff7f0e"),
        ["replicate"] = Color.FromHex("#d62728"),
        ["forward"] = Color.FromHex("#1f77b4"),
        ["gather"] = Color.FromHex("#e377c2"),
        ["loss"] = Color.FromHex("#17becf"),
        ["backward"] = Color.FromHex("#2ca02c"),
        ["grad_sync"] = Color.FromHex("#9467bd"),
        ["reduce_scatter"] = Color.FromHex("#c5b0d5"),
        ["optimizer"] = Color.FromHex("#bcbd22"),
        ["all_gather"] = Color.FromHex("#ff9896"),
    };

    private static Color ModeColor(string mode) => mode switch
    {
        "single" => Color.FromHex("#7f7f7f"),
        "dp" => Color.FromHex("#d62728"),
        "zero1" => Color.FromHex("#9467bd"),
        "zero2" => Color.FromHex("#8c564b"),
        "fsdp" => Color.FromHex("#ff7f0e"),
        _ => Color.FromHex("#1f77b4"),
    };

    /// <summary>One colour per use of device memory (the memory chart's stack, bottom to top).</summary>
    private static readonly (string Name, Color Color)[] MemoryColor =
    {
        ("parameters", Color.FromHex("#1f77b4")), ("gradients", Color.FromHex("#2ca02c")), ("optimizer", Color.FromHex("#bcbd22")),
        ("comm", Color.FromHex("#ff7f0e")), ("activations", Color.FromHex("#c7c7c7")),
    };

    /// <summary>
    /// Device memory per rank by use (rank 0; DP: device 0, which holds the optimizer), stacked, the peak during
    /// training above each column: where ZeRO and FSDP save memory, and what activations cost beside it.
    /// </summary>
    public static Plot Memory(ComparisonResult c)
    {
        var withMemory = c.Modes.Select(m => m.Run.Memory is { Count: > 0 } mem ? mem[0] : null).ToList();
        double max = withMemory.Max(m => m is null ? 0 : Math.Max(m.Peak, m.Parameters + m.Gradients + m.OptimizerState + m.Communication + m.Activations));
        bool mb = max >= 1024 * 1024;
        double unit = mb ? 1024.0 * 1024 : 1024.0;
        string name = mb ? "MiB" : "KiB";
        Plot plot = NewPlot(c, "Device memory per rank by use (rank 0)", $"{name} per rank");
        for (int i = 0; i < c.Modes.Count; i++)
        {
            if (withMemory[i] is not RankMemory m) continue;
            double sum = 0;
            var bars = new List<Bar>();
            foreach (var (row, value) in Comparison.MemoryRows.Where(r => r.Name != "peak"))
            {
                double v = value(m) / unit;
                if (v <= 0) continue;
                bars.Add(Column(i, sum, sum + v, MemoryColor.First(x => x.Name == row).Color, 0.6));
                sum += v;
            }
            if (bars.Count > 0) bars[^1].Label = Invariant($"peak {m.Peak / unit:F1} {name}");
            AddBars(plot, bars.ToArray());
        }
        var items = MemoryColor.Reverse().Select(x => Item(x.Name, x.Color)).ToList();
        Finish(plot, c, max / unit, items, legend: null);
        return plot;
    }

    private static readonly Color Hidden = Color.FromHex("#2ca02c"), Exposed = Color.FromHex("#d62728"), Backward = Color.FromHex("#c7c7c7");

    public static Plot EpochTime(ComparisonResult c)
    {
        Plot plot = NewPlot(c, "Mean epoch time per mode", "seconds per epoch");
        var items = new List<LegendItem>();
        for (int i = 0; i < c.Modes.Count; i++)
        {
            ModeResult m = c.Modes[i];
            string speed = m.Speedup is double s ? Invariant($" ({s:F2}x)") : "";
            Bar bar = Column(i, 0, m.MeanEpochSeconds, ModeColor(m.Mode), 0.6);
            bar.Label = Invariant($"{m.MeanEpochSeconds:F2} s{speed}");
            AddBars(plot, bar);
            items.Add(Item(ReportText.ModeHeader(m), ModeColor(m.Mode)));
        }
        Finish(plot, c, c.Modes.Max(m => m.MeanEpochSeconds), items, Alignment.UpperLeft);
        return plot;
    }

    /// <summary>
    /// Per image, not per step: a DP or DDP step trains on every device's batch, so per step it looks
    /// slower than single while per image (what the epoch time is made of) it may be faster.
    /// </summary>
    public static Plot Phases(ComparisonResult c)
    {
        double SecondsPerImage(ModeResult m, double seconds) => seconds / ReportText.ImagesPerStep(m);
        double max = c.Modes.Max(m => SecondsPerImage(m, m.Run.Breakdown!.PhaseSum));
        // Microseconds on a GPU, milliseconds on the CPU accelerator: whichever keeps the numbers short.
        (double scale, string unit, string name) = max >= 1e-3 ? (1e3, "ms", "milliseconds") : (1e6, "us", "microseconds");
        Plot plot = NewPlot(c, "Time per image by phase (stacked): step time / images per step", $"{name} per image");
        var items = StackPhases(plot, c, (m, p) => scale * SecondsPerImage(m, p.SecondsPerStep), v => Invariant($"{v:F1} {unit}"));
        Finish(plot, c, scale * max, items, legend: null,
            tickLabel: m => Invariant($"{ReportText.ModeHeader(m)}\n{ReportText.ImagesPerStep(m)} img/step"));
        return plot;
    }

    public static Plot Bytes(ComparisonResult c)
    {
        long max = c.Modes.Max(m => ReportText.TotalBytes(m.Run.Breakdown!));
        bool mb = max >= 1024 * 1024;
        double unit = mb ? 1024.0 * 1024 : 1024.0;
        string name = mb ? "MB" : "KB";
        Plot plot = NewPlot(c, "Bytes moved per step by phase (DDP: per rank)", $"{name} per step");
        var items = StackPhases(plot, c, (_, p) => p.BytesPerStep / unit, v => Invariant($"{v:F1} {name}"));
        Finish(plot, c, max / unit, items, legend: null);
        return plot;
    }

    /// <summary>For each multi-device mode: backward beside the gradient all-reduce, split into the part that ran during backward and the part waited for after it.</summary>
    public static Plot Overlap(ComparisonResult c)
    {
        Plot plot = NewPlot(c, "Gradient sync per step: hidden behind backward vs exposed", "milliseconds per step");
        var modes = c.Modes.Where(m => m.Devices > 1).ToList();
        if (modes.Count == 0) modes = c.Modes.ToList();
        double top = 0;
        for (int i = 0; i < modes.Count; i++)
        {
            Breakdown b = modes[i].Run.Breakdown!;
            double backward = 1000 * b.Phases["backward"].SecondsPerStep;
            double hidden = 1000 * b.GradSyncHiddenSecondsPerStep, exposed = 1000 * b.Phases["grad_sync"].SecondsPerStep;
            Bar bw = Column(i - 0.2, 0, backward, Backward, 0.35);
            bw.Label = Invariant($"{backward:F1} ms");
            Bar h = Column(i + 0.2, 0, hidden, Hidden, 0.35);
            Bar e = Column(i + 0.2, hidden, hidden + exposed, Exposed, 0.35);
            double sync = hidden + exposed;
            e.Label = sync > 0 ? Invariant($"{sync:F1} ms, {100 * hidden / sync:F0}% hidden") : "no sync";
            AddBars(plot, bw, h, e);
            if (ReportText.OneBucketNote(modes[i]) is not null)
            {
                // The chart alone would read "0% hidden" with no reason given.
                var note = plot.Add.Annotation("DDP: the whole gradient is one bucket, so its all-reduce\nstarts only after backward; nothing can overlap.\nA smaller --bucket-mb splits it (see report.md).", Alignment.UpperRight);
                note.LabelFontSize = 13;
            }
            top = Math.Max(top, Math.Max(backward, sync));
        }
        var items = new List<LegendItem>
        {
            Item("backward (compute)", Backward),
            Item("gradient sync hidden behind backward", Hidden),
            Item("gradient sync exposed (waited for after backward)", Exposed),
        };
        SetModeTicks(plot, modes);
        Finish(plot, c, top, items, Alignment.UpperLeft, ticks: false);
        return plot;
    }

    /// <summary>One stacked column per mode, one segment per phase that is non-zero somewhere; the total above each column.</summary>
    private static List<LegendItem> StackPhases(Plot plot, ComparisonResult c, Func<ModeResult, PhaseStat, double> value, Func<double, string> total)
    {
        var used = PhaseClock.Phases.Where(p => c.Modes.Any(m => value(m, m.Run.Breakdown!.Phases[p]) > 0)).ToList();
        for (int i = 0; i < c.Modes.Count; i++)
        {
            double sum = 0;
            var bars = new List<Bar>();
            foreach (string phase in used)
            {
                double v = value(c.Modes[i], c.Modes[i].Run.Breakdown!.Phases[phase]);
                if (v <= 0) continue;
                bars.Add(Column(i, sum, sum + v, PhaseColor[phase], 0.6));
                sum += v;
            }
            if (bars.Count > 0) bars[^1].Label = total(sum);
            else bars.Add(new Bar { Position = i, Value = 0, Label = total(0), Size = 0.6 });
            AddBars(plot, bars.ToArray());
        }
        // The legend lists phases top of the stack first, as they appear in the columns.
        return used.AsEnumerable().Reverse().Select(p => Item(p, PhaseColor[p])).ToList();
    }

    private static Plot NewPlot(ComparisonResult c, string title, string yLabel)
    {
        var plot = new Plot();
        bool shared = c.Modes.Any(m => m.Run.Breakdown!.Shared);
        plot.Title(shared ? title + "\n(replicas share one physical device)" : title, size: 18);
        plot.YLabel(yLabel, size: 15);
        plot.XLabel("mode (devices)", size: 15);
        plot.Axes.Bottom.TickLabelStyle.FontSize = 15;
        plot.Axes.Left.TickLabelStyle.FontSize = 13;
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        plot.Grid.XAxisStyle.MajorLineStyle.Width = 0;
        return plot;
    }

    private static Bar Column(double position, double from, double to, Color color, double width) => new()
    {
        Position = position,
        ValueBase = from,
        Value = to,
        FillColor = color,
        LineColor = Colors.Black.WithAlpha(0.5),
        LineWidth = 1,
        Size = width,
    };

    private static void AddBars(Plot plot, params Bar[] bars)
    {
        var bp = plot.Add.Bars(bars);
        bp.ValueLabelStyle.FontSize = 14;
        bp.ValueLabelStyle.Bold = true;
    }

    private static LegendItem Item(string label, Color color) => new()
    {
        LabelText = label,
        FillColor = color,
        LineColor = Colors.Black.WithAlpha(0.5),
        LineWidth = 1,
    };

    private static void SetModeTicks(Plot plot, IReadOnlyList<ModeResult> modes, Func<ModeResult, string>? tickLabel = null)
    {
        double[] positions = Enumerable.Range(0, modes.Count).Select(i => (double)i).ToArray();
        string[] labels = modes.Select(tickLabel ?? ReportText.ModeHeader).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(positions, labels);
    }

    /// <summary>Mode names under the columns, the y axis from zero with room above the tallest column for its label and the legend.</summary>
    /// <param name="legend">Where inside the axes the legend goes; null puts it outside, right of the axes (for long phase lists).</param>
    private static void Finish(Plot plot, ComparisonResult c, double top, List<LegendItem> items, Alignment? legend, bool ticks = true, Func<ModeResult, string>? tickLabel = null)
    {
        if (ticks) SetModeTicks(plot, c.Modes, tickLabel);
        int count = ticks ? c.Modes.Count : Math.Max(1, c.Modes.Count(m => m.Devices > 1));
        plot.Axes.SetLimitsX(-0.6, count - 0.4);
        double room = legend is null ? 1.12 : 1.18 + 0.07 * items.Count;
        plot.Axes.SetLimitsY(0, top > 0 ? top * room : 1);
        plot.Legend.ManualItems.Clear();
        plot.Legend.ManualItems.AddRange(items);
        plot.Legend.FontSize = 13;
        if (legend is Alignment inside)
        {
            plot.Legend.IsVisible = true;
            plot.Legend.Alignment = inside;
        }
        else
        {
            plot.ShowLegend(Edge.Right);
        }
    }
}
