using Engine.Comm;
using Engine.Nn.Checkpoints;
using Engine.Runner.Data;
using Engine.Runner.Training;

namespace Engine.Runner.Commands;

/// <summary>
/// Turns the errors a user can cause (bad option, bad file, diverged loss) into one clear line on
/// stderr and exit code 2, instead of a stack trace. Anything else is a bug and keeps its trace.
/// </summary>
internal static class CliErrors
{
    public const int UserError = 2;

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
            return UserError;
        }
    }

    public static bool IsUserError(Exception e) => e is ArgumentException or DataException or CheckpointException
        or TrainingDivergedException or CommException or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException;
}
