using System.CommandLine;
using System.CommandLine.Invocation;
using Engine.Runner.Commands;

namespace Engine.Runner;

public static class Program
{
    public static int Main(string[] args)
    {
        // A rank of engine launch exits by itself when its launcher dies, rather than train on as an orphan.
        Engine.Comm.LauncherWatch.StartIfLaunched(Console.Error);
        try
        {
            ParseResult parse = BuildRoot().Parse(args);
            if (parse.Action is ParseErrorAction)
            {
                return CliErrors.ReportParseErrors(parse);
            }
            // No default handler: a failure becomes one line below, not System.CommandLine's stack trace; no
            // termination timeout: the launcher handles its own signals and every other command ends on them.
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
        }
        catch (Exception e)
        {
            return CliErrors.ReportUnexpected(e);
        }
    }

    /// <summary>The whole command tree, with worded parse errors and every default in the help (<see cref="OptionConventions"/>).</summary>
    internal static RootCommand BuildRoot()
    {
        var root = new RootCommand("engine: ResNet training on hand-written ILGPU kernels, single device vs DataParallel vs DistributedDataParallel.");
        foreach (Command command in Commands())
        {
            root.Subcommands.Add(command);
        }
        OptionConventions.Apply(root);
        return root;
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
        yield return SweepCommand.Create();
        yield return KernelsCommand.Create();
        var bench = new Command("bench", "Benchmarks: kernels at the model's layer shapes, all-reduce bandwidth.");
        bench.Subcommands.Add(BenchAllReduceCommand.Create());
        bench.Subcommands.Add(BenchKernelsCommand.Create());
        yield return bench;
    }
}
