using System.CommandLine;
using Engine.Runner.Commands;

namespace Engine.Runner;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("engine: ResNet training on hand-written ILGPU kernels, single device vs DataParallel vs DistributedDataParallel.");
        foreach (Command command in Commands())
        {
            root.Subcommands.Add(command);
        }
        return root.Parse(args).Invoke();
    }

    /// <summary>Every subcommand of the CLI; each lives in its own file under Commands/.</summary>
    internal static IEnumerable<Command> Commands()
    {
        yield return TrainCommand.Create();
        yield return DevicesCommand.Create();
        yield return CheckCommand.Create();
        yield return CompareCommand.Create();
        yield return LaunchCommand.Create();
        yield return ModelCommand.Create();
        yield return KernelsCommand.Create();
        var bench = new Command("bench", "Benchmarks: kernels at the model's layer shapes, all-reduce bandwidth.");
        bench.Subcommands.Add(BenchAllReduceCommand.Create());
        bench.Subcommands.Add(BenchKernelsCommand.Create());
        yield return bench;
    }
}
