using System.Diagnostics;
using System.Text;

namespace Engine.Comm.Tests;

/// <summary>Starts <see cref="RankWorker"/> ranks as real processes, through <see cref="Launcher"/> or directly.</summary>
internal static class RankJob
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
    {
        /// <summary>Lines the launcher prefixed with <c>[rank r] </c>, prefix removed.</summary>
        public IEnumerable<string> LinesOf(int rank)
            => (Stdout + "\n" + Stderr).Split('\n').Where(l => l.StartsWith($"[rank {rank}] ", StringComparison.Ordinal)).Select(l => l[$"[rank {rank}] ".Length..].TrimEnd('\r'));
    }

    public static ProcessTarget Worker => new(
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet",
        [typeof(RankWorker).Assembly.Location]);

    /// <summary>Runs a job through the launcher, cancelled (exit 130) if it outlives <paramref name="limit"/>.</summary>
    public static Result Launch(LaunchOptions options, TimeSpan limit, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        using var cancel = new CancellationTokenSource(limit);
        var clock = Stopwatch.StartNew();
        int code = Launcher.Run(options, Worker, args, TextWriter.Synchronized(stdout), TextWriter.Synchronized(stderr), cancel.Token);
        return new Result(code, stdout.ToString(), stderr.ToString(), clock.Elapsed);
    }

    /// <summary>One rank started by hand with torchrun's variables, the way another launcher would.</summary>
    public static Process StartRank(int rank, int worldSize, int port, params string[] args)
        => StartRank(rank, worldSize, port, new Dictionary<string, string>(), args);

    /// <summary>As above, with <paramref name="environment"/> added to the rank's variables.</summary>
    public static Process StartRank(int rank, int worldSize, int port, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var psi = new ProcessStartInfo(Worker.FileName)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in Worker.PrefixArgs.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }
        foreach ((string k, string v) in LaunchEnvironment.ForChild(rank, worldSize, rank, worldSize, "127.0.0.1", port).Concat(environment))
        {
            psi.Environment[k] = v;
        }
        return Process.Start(psi)!;
    }

    /// <summary>Waits for the process (killing it past <paramref name="limit"/>) and returns its exit code and output.</summary>
    public static Result Finish(Process p, TimeSpan limit, Stopwatch clock)
    {
        var outTask = p.StandardOutput.ReadToEndAsync();
        var errTask = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            p.WaitForExit();
        }
        p.WaitForExit();
        return new Result(p.ExitCode, outTask.Result, errTask.Result, clock.Elapsed);
    }
}
