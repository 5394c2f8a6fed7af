using System.CommandLine;
using Engine.Comm;

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
        var child = new Argument<string[]>("command") { Description = "The engine command each rank runs, after --, e.g. -- train --mode ddp.", Arity = ArgumentArity.OneOrMore };

        var command = new Command("launch", "Start N ranks of an engine command with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT); stop them all if one fails.")
        {
            nproc, nnodes, nodeRank, masterAddr, masterPort, child,
        };
        command.SetAction((parse, cancel) => Task.Run(() =>
        {
            var options = new LaunchOptions(parse.GetValue(nproc), parse.GetValue(nnodes), parse.GetValue(nodeRank),
                parse.GetValue(masterAddr)!, parse.GetValue(masterPort));
            try
            {
                return Launcher.Run(options, ProcessTarget.CurrentProcess(), parse.GetValue(child)!, Console.Out, Console.Error, cancel);
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"launch: {e.Message}");
                return 2;
            }
        }));
        return command;
    }
}
