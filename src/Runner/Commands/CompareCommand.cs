using System.CommandLine;
using Engine.Comm;
using Engine.Runner.Compare;
using Engine.Runner.Training;

namespace Engine.Runner.Commands;

/// <summary><c>engine compare</c>: single vs dp vs ddp with identical settings, the seed's table, and each mode's breakdown.</summary>
internal static class CompareCommand
{
    /// <summary>Defaults small enough to finish in a few minutes on a CPU-only machine.</summary>
    public static readonly TrainOptions QuickDefaults = new()
    {
        Model = "resnet18",
        Width = 4,
        TrainLimit = 256,
        TestLimit = 64,
        Epochs = 2,
        BatchSize = 32,
    };

    public static Command Create()
    {
        var command = new Command("compare", "Run single, dp and ddp (or the --modes given) with identical settings; print the seed's table and where each mode spends its step. " +
            "Without options: a quick CPU-sized comparison (resnet18 width 4, 256 images, 2 epochs, batch 32); pass the seed's settings explicitly for the full benchmark.");
        var binder = new TrainOptionBinder(QuickDefaults);
        // compare runs every mode, writes no checkpoint, and puts each mode's trace in --report's folder.
        binder.AddTo(command, nameof(TrainOptions.Mode), nameof(TrainOptions.Save), nameof(TrainOptions.Trace));
        var modes = new Option<string>("--modes")
        {
            Description = $"comma-separated modes to run, in order ({TrainingMode.Names})",
            DefaultValueFactory = _ => string.Join(",", TrainingMode.Seed.Select(m => m.Name)),
        };
        command.Options.Add(modes);
        var report = new Option<string?>("--report") { Description = "write DIR/report.md with the table, breakdowns, explanation, PNG charts and each mode's trace" };
        command.Options.Add(report);
        var emulateNodes = LaunchCommand.EmulateNodesOption();
        emulateNodes.Description = "Run ddp's ranks on this many emulated nodes (network namespaces on a bridge, links shaped by --link; needs root and iproute2); 0: over loopback.";
        var link = LaunchCommand.LinkOption();
        command.Options.Add(emulateNodes);
        command.Options.Add(link);
        command.SetAction(r => CliErrors.Run(() =>
        {
            bool bucketGiven = r.GetResult(binder[nameof(TrainOptions.BucketMb)]) is { Implicit: false };
            int nodes = r.GetValue(emulateNodes);
            LinkRate? rate = LaunchCommand.ParseLink(r.GetValue(link));
            EmulatedCluster.CheckOptions(nodes, rate);
            if (nodes > 0 && EmulatedCluster.Unavailable() is string why) throw new EmulationException(why + ".");
            var chosen = r.GetValue(modes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(m => TrainingMode.Parse(m)).Distinct().ToList();
            Comparison.Run(binder.Bind(r), Console.Out, Console.Error, r.GetValue(report), chooseBucket: !bucketGiven, nodes, rate, chosen);
            return 0;
        }));
        return command;
    }
}
