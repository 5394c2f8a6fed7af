using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Engine.Comm;

/// <summary>
/// Process groups and signals for the launcher (Linux and macOS; elsewhere signals fall back to
/// Process.Kill). A rank started through setsid leads a process group whose id is its pid, so one
/// kill(-pid) reaches the rank and everything it started.
/// </summary>
public static partial class ProcessGroups
{
    /// <summary>util-linux's setsid, which puts the program it runs in a new session and process group; null where absent.</summary>
    public static string? Setsid { get; } = OperatingSystem.IsLinux()
        ? new[] { "/usr/bin/setsid", "/bin/setsid" }.FirstOrDefault(File.Exists)
        : null;

    /// <summary>Sends <paramref name="signal"/> to the process group led by <paramref name="process"/>, or to the process alone when it leads none.</summary>
    public static void Signal(Process process, int signal)
    {
        int pid;
        try
        {
            if (process.HasExited) return;
            pid = process.Id;
        }
        catch (InvalidOperationException)
        {
            return;
        }
        if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
        {
            // Only to a group this rank leads: before setsid has run in the child, its group is still ours.
            if (GetProcessGroup(pid) == pid && Kill(-pid, signal) == 0) return;
            _ = Kill(pid, signal);
        }
        else if (signal == 9)
        {
            process.Kill(entireProcessTree: true);
        }
    }

    /// <summary>"SIGTERM" for 15, and so on for the signals the launcher handles; "signal N" otherwise.</summary>
    public static string SignalName(int signal) => signal switch
    {
        1 => "SIGHUP",
        2 => "SIGINT",
        9 => "SIGKILL",
        15 => "SIGTERM",
        _ => $"signal {signal}",
    };

    /// <summary>The process group of <paramref name="pid"/>, or -1 when it cannot be told.</summary>
    public static int GetProcessGroup(int pid) => OperatingSystem.IsLinux() || OperatingSystem.IsMacOS() ? GetPgid(pid) : -1;

    /// <summary>This process's parent (its pid changes to 1 or a subreaper's when the parent dies).</summary>
    public static int ParentProcessId() => OperatingSystem.IsLinux() || OperatingSystem.IsMacOS() ? GetPpid() : -1;

    /// <summary>Whether a process <paramref name="pid"/> exists (a zombie still counts).</summary>
    public static bool IsAlive(int pid)
    {
        if (!(OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())) return true;
        if (Kill(pid, 0) == 0) return true;
        const int EPERM = 1; // exists, owned by someone else
        return Marshal.GetLastPInvokeError() == EPERM;
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "getpgid")]
    private static partial int GetPgid(int pid);

    [LibraryImport("libc", EntryPoint = "getppid")]
    private static partial int GetPpid();
}
