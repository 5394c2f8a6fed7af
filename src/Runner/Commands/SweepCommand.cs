using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Engine.Comm;
using Engine.Runner.Report;
using Engine.Runner.Sweep;

namespace Engine.Runner.Commands;

/// <summary><c>engine sweep</c>: DDP's step time and hidden all-reduce against link bandwidth and bucket cap, on emulated nodes.</summary>
internal static class SweepCommand
{
    public static Command Create()
    {
        var command = new Command("sweep", "Run DDP on emulated nodes at each --links rate and --bucket-caps cap (one run each, after one single-device run for the model) and draw " +
            "step time and the hidden share of the all-reduce against bandwidth, measured beside the scaling model's prediction. Needs root and iproute2. " +
            "Without options: the quick CPU-sized model of engine compare.");
        var binder = new TrainOptionBinder(CompareCommand.QuickDefaults);
        binder.AddTo(command, nameof(TrainOptions.Mode), nameof(TrainOptions.Save), nameof(TrainOptions.Trace));
        var nodes = LaunchCommand.EmulateNodesOption();
        nodes.Description = "Emulated nodes, one DDP rank on each (network namespaces on a bridge; root and iproute2).";
        nodes.DefaultValueFactory = _ => 2;
        var links = new Option<string>("--links") { Description = "Link rates to sweep, as tc writes them.", DefaultValueFactory = _ => "2mbit,4mbit,8mbit,16mbit,64mbit" };
        var caps = new Option<string?>("--bucket-caps") { Description = "DDP bucket caps to sweep, MiB, comma-separated. [default: the cap engine compare picks to show overlap, and --bucket-mb]" };
        var chart = new Option<string?>("--chart") { Description = $"write DIR/{SweepCharts.StepChart} and DIR/{SweepCharts.HiddenChart}" };
        command.Options.Add(nodes);
        command.Options.Add(links);
        command.Options.Add(caps);
        command.Options.Add(chart);
        command.SetAction(r => CliErrors.Run(() =>
        {
            TrainOptions o = binder.Bind(r);
            int n = r.GetValue(nodes);
            var rates = r.GetValue(links)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(LinkRate.Parse).ToList();
            IReadOnlyList<double>? bucketCaps = r.GetValue(caps) is string c ? ParseCaps(c) : null;
            LinkSweep.CheckOptions(n, rates, bucketCaps);
            if (EmulatedCluster.Unavailable() is string why) throw new EmulationException(why + ".");
            if (r.GetValue(chart) is string dir) OutputPaths.CheckFolder("--chart", dir);
            SweepResult result = LinkSweep.Run(o with { Output = null }, n, rates, bucketCaps, Console.Error);
            Console.Out.Write(LinkSweep.Table(result));
            if (o.Output is string path) AtomicFile.WriteAllText(path, JsonSerializer.Serialize(result, RunResult.Json));
            if (r.GetValue(chart) is string d)
            {
                foreach (string written in SweepCharts.Write(result, d)) Console.Error.WriteLine($"sweep: wrote {written}");
            }
            return 0;
        }));
        return command;
    }

    private static IReadOnlyList<double> ParseCaps(string text) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v > 0 && double.IsFinite(v) ? v
            : throw new ArgumentException($"--bucket-caps: '{s}' is not a positive number of MiB."))
        .ToArray();
}
