using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Engine.Comm;

/// <summary>
/// torchrun's contract for one node: start <see cref="LaunchOptions.NprocPerNode"/> ranks with RANK,
/// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT set; prefix their output lines
/// with the rank; if one rank exits non-zero or dies, stop the others and return its exit code; on a
/// stop request (SIGINT, SIGTERM or SIGHUP to the launcher, see <see cref="StopSignals"/>) forward that
/// signal to every rank, kill those still running after <see cref="LaunchOptions.StopGrace"/>, and
/// return 128 + the signal's number. Each rank runs in a process group of its own (started through
/// setsid), so a signal sent to the group reaches whatever the rank started too; and each rank is told
/// the launcher's pid (<see cref="LauncherWatch"/>), so it exits by itself if the launcher is killed.
/// With <see cref="LaunchOptions.EmulatedNodes"/> it first builds that many nodes on this machine
/// (<see cref="EmulatedCluster"/>), starts every node's ranks inside it, and removes the nodes however
/// the job ends.
/// </summary>
public static class Launcher
{
    /// <summary>Runs the job and returns its exit code: 0 when every rank exited 0.</summary>
    /// <param name="cancel">Stops the job as SIGINT would (exit 130), unless <paramref name="stopSignal"/> names the signal that asked for it.</param>
    /// <param name="stopSignal">The signal number that cancelled <paramref name="cancel"/> (forwarded to the ranks, and 128 + it is returned).</param>
    public static int Run(LaunchOptions options, ProcessTarget target, IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr, CancellationToken cancel = default, Func<int>? stopSignal = null)
    {
        Validate(options);
        EmulatedCluster? cluster = options.EmulatedNodes > 0 ? EmulatedCluster.Create(options.EmulatedNodes, options.Link!.Value, stderr) : null;
        if (cluster is not null)
        {
            stderr.WriteLine($"launch: emulating {cluster.Describe()}; {options.NprocPerNode} rank(s) per node share its link.");
        }
        try
        {
            return Run(options, cluster, target, args, stdout, stderr, cancel, stopSignal);
        }
        finally
        {
            if (cluster is not null)
            {
                cluster.Dispose();
                stderr.WriteLine($"launch: removed the emulated nodes (namespaces {cluster.Prefix}*, their links, bridge and qdiscs).");
            }
        }
    }

    private static int Run(LaunchOptions options, EmulatedCluster? cluster, ProcessTarget target, IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr,
        CancellationToken cancel, Func<int>? stopSignal)
    {
        // Emulated nodes are fresh namespaces: nothing else listens there, so the default port is free.
        string masterAddr = cluster is null ? options.MasterAddr : EmulatedCluster.NodeAddress(0);
        int port = options.MasterPort != 0 ? options.MasterPort : cluster is null ? FreePort(options.MasterAddr) : DefaultEmulatedPort;
        int nodes = cluster?.Nodes ?? options.Nnodes;
        int world = nodes * options.NprocPerNode;
        IEnumerable<int> startedNodes = cluster is null ? [options.NodeRank] : Enumerable.Range(0, cluster.Nodes);
        var gate = new object();
        var ranks = new List<(int Rank, Process Process)>();
        try
        {
            foreach ((int node, int local) in startedNodes.SelectMany(node => Enumerable.Range(0, options.NprocPerNode).Select(local => (node, local))))
            {
                int rank = node * options.NprocPerNode + local;
                // setsid puts the rank in a process group of its own; --wait keeps the rank's exit code ours even if
                // setsid had to fork (it does not when the child is no group leader, which a freshly started
                // process never is). ip netns exec (emulated nodes) execs the program in place: same pid and group.
                List<string> argv =
                [
                    .. ProcessGroups.Setsid is string setsid ? [setsid, "--wait"] : Array.Empty<string>(),
                    .. cluster?.ExecPrefix(node) ?? [],
                    target.FileName,
                    .. target.PrefixArgs,
                    .. args,
                ];
                var psi = new ProcessStartInfo(argv[0])
                {
                    UseShellExecute = false,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true,
                    RedirectStandardInput = false,
                };
                foreach (string a in argv.Skip(1))
                {
                    psi.ArgumentList.Add(a);
                }
                psi.Environment[LauncherWatch.Variable] = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
                foreach ((string k, string v) in LaunchEnvironment.ForChild(rank, world, local, options.NprocPerNode, masterAddr, port))
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
                    Stop(ranks, Sigterm, options.StopGrace, stderr, gate);
                    return 1;
                }
                p.BeginOutputReadLine();
                p.BeginErrorReadLine();
                ranks.Add((rank, p));
            }
            lock (gate)
            {
                stderr.WriteLine($"launch: started {string.Join(", ", ranks.Select(r => $"rank {r.Rank} (pid {r.Process.Id})"))}" +
                    (ProcessGroups.Setsid is not null ? ", each in its own process group" : "") + ".");
            }
            return Monitor(ranks, options, stderr, gate, cancel, stopSignal);
        }
        finally
        {
            foreach ((_, Process p) in ranks)
            {
                p.Dispose();
            }
        }
    }

    private const int Sigint = 2, Sigterm = 15, Sigkill = 9;

    /// <summary>The store's port on emulated nodes when none is given (torchrun's default).</summary>
    public const int DefaultEmulatedPort = 29500;

    private static int Monitor(List<(int Rank, Process Process)> ranks, LaunchOptions options, TextWriter stderr, object gate, CancellationToken cancel, Func<int>? stopSignal)
    {
        var running = new HashSet<int>(ranks.Select(r => r.Rank));
        while (running.Count > 0)
        {
            if (cancel.IsCancellationRequested)
            {
                int signal = stopSignal?.Invoke() ?? Sigint;
                var alive = ranks.Where(r => running.Contains(r.Rank)).ToList();
                lock (gate)
                {
                    stderr.WriteLine($"launch: received {ProcessGroups.SignalName(signal)}; forwarding it to {Describe(alive)} and killing any still running after {options.StopGrace.TotalSeconds:0.#} s.");
                }
                Stop(alive, signal, options.StopGrace, stderr, gate);
                lock (gate) { stderr.WriteLine($"launch: every rank has stopped; exiting with {128 + signal} (128 + {ProcessGroups.SignalName(signal)})."); }
                return 128 + signal;
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
                    Stop(ranks.Where(r => running.Contains(r.Rank)).ToList(), Sigterm, options.StopGrace, stderr, gate);
                    return code;
                }
            }
            WaitHandle.WaitAny([cancel.WaitHandle], TimeSpan.FromMilliseconds(20));
        }
        return 0;
    }

    private static string Describe(int code) => code > 128 && code < 160 ? $" (killed by signal {code - 128})" : "";

    private static string Describe(IReadOnlyCollection<(int Rank, Process Process)> ranks)
        => ranks.Count == 0 ? "no rank (all have exited)" : string.Join(", ", ranks.Select(r => $"rank {r.Rank}"));

    /// <summary>
    /// <paramref name="signal"/> to every rank's process group, then SIGKILL to the groups (and process
    /// trees) of those still running after the grace period; says which ranks it had to kill.
    /// </summary>
    private static void Stop(List<(int Rank, Process Process)> ranks, int signal, TimeSpan grace, TextWriter stderr, object gate)
    {
        foreach ((_, Process p) in ranks)
        {
            ProcessGroups.Signal(p, signal);
        }
        var clock = Stopwatch.StartNew();
        var killed = new List<int>();
        foreach ((int rank, Process p) in ranks)
        {
            TimeSpan left = grace - clock.Elapsed;
            if (!p.WaitForExit(left > TimeSpan.Zero ? left : TimeSpan.Zero))
            {
                killed.Add(rank);
                ProcessGroups.Signal(p, Sigkill);
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
        if (killed.Count > 0)
        {
            lock (gate) { stderr.WriteLine($"launch: {string.Join(", ", killed.Select(r => $"rank {r}"))} still running after {grace.TotalSeconds:0.#} s; killed (SIGKILL)."); }
        }
    }

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
        if (o.EmulatedNodes > 0 && (o.Nnodes != 1 || o.NodeRank != 0))
        {
            throw new ArgumentException("--emulate-nodes builds every node of the job on this machine: leave --nnodes and --node-rank at their defaults.");
        }
        EmulatedCluster.CheckOptions(o.EmulatedNodes, o.Link);
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
