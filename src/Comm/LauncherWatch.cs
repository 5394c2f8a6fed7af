namespace Engine.Comm;

/// <summary>
/// A rank's side of the launcher contract: the launcher passes its pid in ENGINE_LAUNCHER_PID, and the
/// rank checks a few times a second that it is still its parent. When the launcher dies without
/// stopping it (kill -9, a crash), the rank is re-parented, notices within a second and exits instead of
/// training on as an orphan.
/// </summary>
public static class LauncherWatch
{
    public const string Variable = "ENGINE_LAUNCHER_PID";

    /// <summary>The exit code of a rank whose launcher is gone (as if hung up: 128 + SIGHUP).</summary>
    public const int LauncherGoneExitCode = 129;

    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(250);

    /// <summary>Starts watching when this process was started by <c>engine launch</c>; returns whether it was.</summary>
    public static bool StartIfLaunched(TextWriter stderr)
    {
        if (!int.TryParse(Environment.GetEnvironmentVariable(Variable), out int launcher) || ProcessGroups.ParentProcessId() < 0)
        {
            return false;
        }
        var thread = new Thread(() => Watch(launcher, stderr)) { IsBackground = true, Name = "launcher watch" };
        thread.Start();
        return true;
    }

    private static void Watch(int launcher, TextWriter stderr)
    {
        // Normally the launcher is our parent; should setsid have had to fork, the parent is setsid and the
        // launcher's own existence is what tells.
        int parent = ProcessGroups.ParentProcessId();
        while (ProcessGroups.ParentProcessId() == parent && ProcessGroups.IsAlive(launcher))
        {
            Thread.Sleep(Poll);
        }
        string rank = Environment.GetEnvironmentVariable("RANK") ?? "?";
        try
        {
            stderr.WriteLine($"rank {rank}: the launcher (pid {launcher}) is gone; exiting.");
            stderr.Flush();
        }
        catch (IOException)
        {
            // stderr was the dead launcher's pipe: nobody is left to read the message.
        }
        // Environment.Exit runs exit handlers and may wait on threads stuck in a device call; do not let that keep us alive.
        var deadline = new Thread(() =>
        {
            Thread.Sleep(TimeSpan.FromSeconds(3));
            Environment.FailFast($"rank {rank}: the launcher is gone and the orderly exit took over 3 s.");
        }) { IsBackground = true };
        deadline.Start();
        Environment.Exit(LauncherGoneExitCode);
    }
}
