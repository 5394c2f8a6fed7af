using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Engine.Comm;

/// <summary>
/// torchrun's contract for one node: start <see cref="LaunchOptions.NprocPerNode"/> ranks with RANK,
/// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT set; prefix their output lines
/// with the rank; if one rank exits non-zero or dies, stop the others and return its exit code; on
/// cancellation (Ctrl-C) stop them all.
/// </summary>
public static partial class Launcher
{
    /// <summary>Runs the job and returns its exit code: 0 when every rank exited 0.</summary>
    public static int Run(LaunchOptions options, ProcessTarget target, IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default)
    {
        Validate(options);
        int port = options.MasterPort != 0 ? options.MasterPort : FreePort(options.MasterAddr);
        int world = options.Nnodes * options.NprocPerNode;
        var gate = new object();
        var ranks = new List<(int Rank, Process Process)>();
        try
        {
            for (int local = 0; local < options.NprocPerNode; local++)
            {
                int rank = options.NodeRank * options.NprocPerNode + local;
                var psi = new ProcessStartInfo(target.FileName)
                {
                    UseShellExecute = false,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    RedirectStandardInput = false,
                };
                foreach (string a in target.PrefixArgs.Concat(args))
                {
                    psi.ArgumentList.Add(a);
                }
                foreach ((string k, string v) in LaunchEnvironment.ForChild(rank, world, local, options.NprocPerNode, options.MasterAddr, port))
                {
                    psi.Environment[k] = v;
                }
                foreach ((string k, string v) in options.ExtraEnvironment)
                {
                    psi.Environment[k] = v;
                }
                var p = new Process { StartInfo = psi };
                string prefix = $"[rank {rank}] ";
                bool passStdout = !options.OnlyRank0Stdout || rank == 0;
                p.OutputDataReceived += (_, e) =>
                {
                    if (e.Data is not null && passStdout)
                    {
                        lock (gate) { stdout.WriteLine(options.OnlyRank0Stdout ? e.Data : prefix + e.Data); stdout.Flush(); }
                    }
                };
                p.ErrorDataReceived += (_, e) =>
                {
                    if (e.Data is not null)
                    {
                        lock (gate) { stderr.WriteLine(prefix + e.Data); stderr.Flush(); }
                    }
                };
                try
                {
                    p.Start();
                }
                catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
                {
                    p.Dispose();
                    lock (gate) { stderr.WriteLine($"launch: could not start rank {rank} ({target.FileName}): {e.Message}"); }
                    Stop(ranks, options.StopGrace);
                    return 1;
                }
                p.BeginOutputReadLine();
                p.BeginErrorReadLine();
                ranks.Add((rank, p));
            }
            return Monitor(ranks, options, stderr, gate, cancel);
        }
        finally
        {
            foreach ((_, Process p) in ranks)
            {
                p.Dispose();
            }
        }
    }

    private static int Monitor(List<(int Rank, Process Process)> ranks, LaunchOptions options, TextWriter stderr, object gate, CancellationToken cancel)
    {
        var running = new HashSet<int>(ranks.Select(r => r.Rank));
        while (running.Count > 0)
        {
            if (cancel.IsCancellationRequested)
            {
                lock (gate) { stderr.WriteLine("launch: interrupted; stopping every rank."); }
                Stop(ranks, options.StopGrace);
                return 130;
            }
            foreach ((int rank, Process p) in ranks)
            {
                if (!running.Contains(rank) || !p.WaitForExit(0))
                {
                    continue;
                }
                p.WaitForExit(); // drains the redirected output
                running.Remove(rank);
                int code = p.ExitCode;
                if (code != 0)
                {
                    lock (gate)
                    {
                        stderr.WriteLine($"launch: rank {rank} exited with code {code}{Describe(code)}; stopping the other ranks.");
                    }
                    Stop(ranks, options.StopGrace);
                    return code;
                }
            }
            WaitHandle.WaitAny([cancel.WaitHandle], TimeSpan.FromMilliseconds(20));
        }
        return 0;
    }

    private static string Describe(int code) => code > 128 && code < 160 ? $" (killed by signal {code - 128})" : "";

    /// <summary>SIGTERM to every rank still running, then SIGKILL (with its children) after the grace period.</summary>
    private static void Stop(List<(int Rank, Process Process)> ranks, TimeSpan grace)
    {
        foreach ((_, Process p) in ranks)
        {
            if (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS())
            {
                try
                {
                    if (!p.HasExited)
                    {
                        _ = SendSignal(p.Id, 15);
                    }
                }
                catch (InvalidOperationException)
                {
                }
            }
        }
        var clock = Stopwatch.StartNew();
        foreach ((_, Process p) in ranks)
        {
            TimeSpan left = grace - clock.Elapsed;
            if (!p.WaitForExit(left > TimeSpan.Zero ? left : TimeSpan.Zero))
            {
                try
                {
                    p.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                }
            }
        }
        foreach ((_, Process p) in ranks)
        {
            p.WaitForExit(TimeSpan.FromSeconds(5));
        }
    }

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int SendSignal(int pid, int signal);

    private static void Validate(LaunchOptions o)
    {
        if (o.NprocPerNode < 1)
        {
            throw new ArgumentException($"--nproc-per-node {o.NprocPerNode}: must be at least 1.");
        }
        if (o.Nnodes < 1 || o.NodeRank < 0 || o.NodeRank >= o.Nnodes)
        {
            throw new ArgumentException($"--node-rank {o.NodeRank} is outside 0..--nnodes-1 (--nnodes {o.Nnodes}).");
        }
        if (o.MasterPort < 0 || o.MasterPort > 65535)
        {
            throw new ArgumentException($"--master-port {o.MasterPort}: must be in 0..65535.");
        }
        if (o.MasterPort == 0 && o.Nnodes > 1)
        {
            throw new ArgumentException("--master-port 0 (pick a free port) only works on one node: with --nnodes > 1 every node must be given the same port.");
        }
    }

    /// <summary>A port free right now on <paramref name="address"/> (as torchrun does, there is a small window in which another program could take it).</summary>
    public static int FreePort(string address = "127.0.0.1")
    {
        IPAddress ip = IPAddress.TryParse(address, out IPAddress? parsed) ? parsed : IPAddress.Loopback;
        var l = new TcpListener(ip, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }
}
