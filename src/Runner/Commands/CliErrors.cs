using System.CommandLine;
using System.CommandLine.Parsing;
using Engine.Comm;
using Engine.Nn.Checkpoints;
using Engine.Runner.Data;
using Engine.Runner.Training;

namespace Engine.Runner.Commands;

/// <summary>
/// Turns every failure into one line on stderr and exit code 2, never a stack trace: the errors a user
/// can cause (bad option, bad file, diverged loss) say what was wrong; anything else is a bug, named as
/// one, and <c>ENGINE_DEBUG=1</c> prints its trace.
/// </summary>
internal static class CliErrors
{
    public const int UserError = 2;

    /// <summary>The variable that makes unexpected errors print their stack trace.</summary>
    public const string DebugVariable = "ENGINE_DEBUG";

    public static int Run(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Out.Flush();
            Console.Error.WriteLine($"error: {e.Message}");
            if (Debugging) Console.Error.WriteLine(e);
            return UserError;
        }
    }

    public static bool IsUserError(Exception e) => e is ArgumentException or DataException or CheckpointException
        or TrainingDivergedException or CommException or EmulationException or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException;

    private static bool Debugging => Environment.GetEnvironmentVariable(DebugVariable) == "1";

    /// <summary>The top-level handler: whatever escaped a command, in one line (the trace only with ENGINE_DEBUG=1).</summary>
    public static int ReportUnexpected(Exception e) => ReportUnexpected(e, Debugging);

    internal static int ReportUnexpected(Exception e, bool debug)
    {
        while (e is AggregateException { InnerExceptions.Count: 1 } a) e = a.InnerExceptions[0];
        Console.Out.Flush();
        Console.Error.WriteLine(IsUserError(e) || e is IOException
            ? $"error: {e.Message}"
            : $"error: internal error ({e.GetType().Name}): {e.Message}{(debug ? "" : $" (set {DebugVariable}=1 for the stack trace)")}");
        if (debug) Console.Error.WriteLine(e);
        return UserError;
    }

    /// <summary>Parse errors, one line each, and where to read the command's options.</summary>
    public static int ReportParseErrors(ParseResult parse)
    {
        foreach (var error in parse.Errors)
        {
            Console.Error.WriteLine($"error: {error.Message}");
        }
        var names = new List<string>();
        for (SymbolResult? r = parse.CommandResult; r is CommandResult c; r = c.Parent)
        {
            names.Insert(0, c.Command is RootCommand ? "engine" : c.Command.Name);
        }
        Console.Error.WriteLine($"see '{string.Join(' ', names)} --help' for the options and their defaults.");
        return UserError;
    }
}
