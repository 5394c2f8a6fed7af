using System.CommandLine;
using Engine.Comm;
using Engine.Runner.Training;

namespace Engine.Runner.Commands;

/// <summary><c>engine launch</c>: torchrun for the engine (starts the ranks of this node, watches them).</summary>
internal static class LaunchCommand
{
    public static Command Create()
    {
        var nproc = new Option<int>("--nproc-per-node") { Description = "Ranks to start on this node.", Required = true };
        var nnodes = new Option<int>("--nnodes") { Description = "Nodes in the job.", DefaultValueFactory = _ => 1 };
        var nodeRank = new Option<int>("--node-rank") { Description = "This node's index (0..nnodes-1).", DefaultValueFactory = _ => 0 };
        var masterAddr = new Option<string>("--master-addr") { Description = "Address of rank 0's host.", DefaultValueFactory = _ => "127.0.0.1" };
        var masterPort = new Option<int>("--master-port") { Description = "Port of rank 0's rendezvous store; 0 picks a free one (one node only).", DefaultValueFactory = _ => 29500 };
        var child = new Argument<string[]>("command") { Description = "The engine command each rank runs, after --: train --mode ddp ... or bench allreduce ...", Arity = ArgumentArity.OneOrMore };
        var emulateNodes = EmulateNodesOption();
        var link = LinkOption();
        var grace = new Option<double>("--stop-grace") { Description = "Seconds the ranks get to exit after a forwarded signal (or another rank's failure) before they are killed.", DefaultValueFactory = _ => 5 };

        var command = new Command("launch", "Start N ranks of an engine command with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT); stop them all if one fails.")
        {
            nproc, nnodes, nodeRank, masterAddr, masterPort, emulateNodes, link, grace, child,
        };
        command.SetAction(parse => CliErrors.Run(() =>
        {
            double graceSeconds = parse.GetValue(grace);
            if (!double.IsFinite(graceSeconds) || graceSeconds < 0) throw new ArgumentException($"--stop-grace must be a finite number of seconds >= 0, got {graceSeconds}.");
            var options = new LaunchOptions(parse.GetValue(nproc), parse.GetValue(nnodes), parse.GetValue(nodeRank),
                parse.GetValue(masterAddr)!, parse.GetValue(masterPort))
            {
                StopGrace = TimeSpan.FromSeconds(graceSeconds),
                EmulatedNodes = parse.GetValue(emulateNodes),
                Link = ParseLink(parse.GetValue(link)),
            };
            CheckRunsAsRanks(parse.GetValue(child)!);
            using var signals = new StopSignals();
            return Launcher.Run(options, ProcessTarget.CurrentProcess(), parse.GetValue(child)!, Console.Out, Console.Error, signals.Token, () => signals.Signal);
        }));
        return command;
    }

    /// <summary>--emulate-nodes, as launch and bench allreduce both take it.</summary>
    public static Option<int> EmulateNodesOption() => new("--emulate-nodes")
    {
        Description = "Build this many nodes on this machine (network namespaces on a bridge, links shaped by --link; needs root and iproute2) and start --nproc-per-node ranks in each; 0: ranks talk over loopback.",
        DefaultValueFactory = _ => 0,
    };

    /// <summary>--link, as launch and bench allreduce both take it.</summary>
    public static Option<string?> LinkOption() => new("--link")
    {
        Description = "Bandwidth of each emulated node's link, both ways, as tc writes it (1gbit, 200mbit); only with --emulate-nodes. No latency is added.",
    };

    public static LinkRate? ParseLink(string? text) => text is null ? null : LinkRate.Parse(text);

    /// <summary>
    /// Refuses a command whose copies would not form one job: N copies of <c>train --mode single</c> or
    /// <c>dp</c> are N independent runs writing the same files, which is never what was meant.
    /// </summary>
    private static void CheckRunsAsRanks(string[] child)
    {
        const string Allowed = "launch starts the ranks of one job: '-- train --mode ddp|zero1|zero2|fsdp ...' or '-- bench allreduce ...'";
        if (child is ["bench", "allreduce", ..])
        {
            return;
        }
        if (child is not ["train", ..])
        {
            throw new ArgumentException($"'{string.Join(' ', child.Take(2))}' runs in one process; {Allowed}.");
        }
        ParseResult parsed = Program.BuildRoot().Parse(child);
        if (parsed.Errors.Count > 0)
        {
            throw new ArgumentException($"the rank command '{string.Join(' ', child)}' does not parse: {parsed.Errors[0].Message}");
        }
        TrainingMode mode = TrainingMode.Parse(parsed.GetValue<string>("--mode") ?? TrainingMode.Single.Name);
        if (!mode.MultiProcess)
        {
            throw new ArgumentException($"'train --mode {mode}' is a single-process mode: launching it gives independent runs, not one job; {Allowed}.");
        }
    }
}
