using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Engine.Comm;

namespace Engine.Runner.Tests;

/// <summary>
/// engine launch / bench allreduce over emulated nodes: the links carry what their rate allows and no
/// more, the nodes reach only each other, and nothing of the cluster (namespace, veth, bridge, qdisc)
/// outlives the run, whether it ends, a rank is killed, the launcher is signalled or killed.
/// </summary>
[Collection("cpu-training")]
public class EmulatedNodesTests
{
    private static readonly TimeSpan RunLimit = TimeSpan.FromMinutes(2);

    [EmulatedNodesFact]
    public async Task Two_nodes_all_reduce_no_faster_than_the_link_allows_and_within_1_5x_of_it_then_leave_nothing()
    {
        var before = HostNetwork.Snapshot();
        var link = LinkRate.Parse("200mbit");
        const long Bytes = 8L << 20; // floor about 0.33 s at 200mbit
        using var run = EngineProcess.Start("bench", "allreduce", "--emulate-nodes", "2", "--link", link.ToString(), "--sizes", "8M", "--iters", "3", "--timeout", "60");
        int code = await run.WaitAsync(RunLimit);
        Assert.True(code == 0, $"bench exited with {code}:\n{run.Log}");

        Match row = Regex.Match(run.Stdout, $@"^\s*{Bytes}\s+\d+\s+\d+\s+([0-9.]+)\s", RegexOptions.Multiline);
        Assert.True(row.Success, "no 8M row in the table:\n" + run.Log);
        double seconds = double.Parse(row.Groups[1].Value, CultureInfo.InvariantCulture) / 1e3;
        double floor = AllReduceBench.LinkFloorSeconds(Bytes, ranks: 2, link);
        Assert.True(seconds >= floor, $"an all-reduce of {Bytes} bytes took {seconds:F3} s, below the {link} link's floor of {floor:F3} s: the link is not shaped");
        Assert.True(seconds <= 1.5 * floor, $"an all-reduce of {Bytes} bytes took {seconds:F3} s, more than 1.5x the {link} link's floor of {floor:F3} s:\n{run.Log}");

        HostNetwork.AssertNothingLeft(before, run.Pid, run.Log);
    }

    [EmulatedNodesFact]
    public async Task A_rank_killed_mid_run_fails_the_launch_and_leaves_nothing()
    {
        var before = HostNetwork.Snapshot();
        // 64M at 50mbit: about 11 s per all-reduce, far longer than the test waits before the kill.
        using var run = EngineProcess.Start("bench", "allreduce", "--emulate-nodes", "2", "--link", "50mbit", "--sizes", "64M", "--iters", "20", "--timeout", "30");
        int[] pids = await run.RankPidsAsync(RunLimit);
        await run.WaitForStdoutAsync("# all_reduce", RunLimit); // the ring is up: the ranks are mid-run
        Signal(pids[1], "KILL");
        int code = await run.WaitAsync(RunLimit);
        Assert.True(code != 0, "launch exited 0 although rank 1 was killed:\n" + run.Log);
        Assert.Contains("launch: rank 1 exited with code 137", run.Log);
        HostNetwork.AssertNothingLeft(before, run.Pid, run.Log);
    }

    [EmulatedNodesTheory]
    [InlineData("TERM", 15)]
    [InlineData("INT", 2)]
    public async Task A_signal_to_the_launcher_stops_the_ranks_and_leaves_nothing(string signal, int number)
    {
        var before = HostNetwork.Snapshot();
        using var run = EngineProcess.Start("bench", "allreduce", "--emulate-nodes", "2", "--link", "50mbit", "--sizes", "64M", "--iters", "20", "--timeout", "30");
        await run.RankPidsAsync(RunLimit);
        await run.WaitForStdoutAsync("# all_reduce", RunLimit);
        Signal(run.Pid, signal);
        int code = await run.WaitAsync(RunLimit);
        Assert.True(code == 128 + number, $"launch exited with {code}, expected {128 + number}:\n{run.Log}");
        HostNetwork.AssertNothingLeft(before, run.Pid, run.Log);
    }

    [EmulatedNodesFact]
    public async Task A_killed_launchers_nodes_are_found_by_name_and_removed_by_the_next_run()
    {
        var before = HostNetwork.Snapshot();
        using var run = EngineProcess.Start("bench", "allreduce", "--emulate-nodes", "2", "--link", "50mbit", "--sizes", "64M", "--iters", "20", "--timeout", "30");
        int[] pids = await run.RankPidsAsync(RunLimit);
        Signal(run.Pid, "KILL");
        await run.WaitAsync(RunLimit);
        try
        {
            string[] stale = EmulatedCluster.ExistingNamespaces().Where(n => EmulatedCluster.OwnerPid(n) == run.Pid).ToArray();
            Assert.True(stale.Length == 3, $"expected the killed launcher's switch and two nodes to be left, found: {string.Join(", ", stale)}");

            var log = new StringWriter();
            IReadOnlyList<string> removed = EmulatedCluster.RemoveStale(log);
            Assert.Subset(removed.ToHashSet(), stale.ToHashSet());
            Assert.Contains("left by an earlier run", log.ToString());
            HostNetwork.AssertNothingLeft(before, run.Pid, run.Log);
        }
        finally
        {
            foreach (int pid in pids) Signal(pid, "KILL"); // the ranks exit by themselves within a second; this is a backstop
        }
    }

    [EmulatedNodesFact]
    public async Task A_sweep_point_runs_ddp_over_the_link_and_leaves_nothing()
    {
        var before = HostNetwork.Snapshot();
        string json = Path.Combine(Path.GetTempPath(), $"engine-sweep-{Guid.NewGuid():N}.json");
        try
        {
            // Without overlap every bucket waits for the end of backward, so each step's exchange is on the link alone.
            using var run = EngineProcess.Start("sweep", "--links", "16mbit", "--bucket-caps", "0.05", "--no-overlap", "--train-limit", "64", "--test-limit", "0", "--epochs", "1", "--output", json);
            int code = await run.WaitAsync(TimeSpan.FromMinutes(5));
            Assert.True(code == 0, $"sweep exited with {code}:\n{run.Log}");
            Assert.Contains("| 16mbit | 0.05 | ", run.Stdout);
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json));
            var point = doc.RootElement.GetProperty("points").EnumerateArray().Single();
            Assert.True(point.GetProperty("buckets").GetInt32() >= 2, point.ToString()); // 0.05 MiB cuts the 176 KB gradient
            // The 176 KB gradient (45,102 floats) crosses the 16mbit link each step: never faster than the link's floor.
            double floor = AllReduceBench.LinkFloorSeconds(45_102 * sizeof(float), ranks: 2, LinkRate.Parse("16mbit"));
            double exposed = point.GetProperty("exposed_sync_seconds").GetDouble();
            Assert.True(exposed >= floor, $"exposed all-reduce {exposed:F4} s per step, below the link's floor {floor:F4} s: {point}");
            HostNetwork.AssertNothingLeft(before, run.Pid, run.Log);
        }
        finally
        {
            File.Delete(json);
        }
    }

    [EmulatedNodesFact]
    public void Each_node_has_only_its_link_and_no_route_beyond_the_nodes_subnet()
    {
        var before = HostNetwork.Snapshot();
        using (var cluster = EmulatedCluster.Create(2, LinkRate.Parse("1gbit"), TextWriter.Null))
        {
            for (int i = 0; i < cluster.Nodes; i++)
            {
                string ns = cluster.NodeNamespace(i);
                // One route: the nodes' own subnet, on the link to the bridge. No default route, no other interface.
                string[] routes = Lines(Ip("-n", ns, "route", "show", "table", "all"))
                    .Where(r => !r.StartsWith("local ", StringComparison.Ordinal) && !r.StartsWith("broadcast ", StringComparison.Ordinal)
                                && !r.StartsWith("multicast ", StringComparison.Ordinal) && !r.Contains("dev lo", StringComparison.Ordinal)
                                && !r.StartsWith("fe80::", StringComparison.Ordinal))
                    .ToArray();
                Assert.True(routes.Length == 1 && routes[0].StartsWith(EmulatedCluster.Subnet + " dev eth0", StringComparison.Ordinal),
                    $"node {i}'s routes are not just its subnet on eth0:\n{string.Join('\n', routes)}");
                string[] links = Lines(Ip("-n", ns, "-o", "link", "show")).Select(l => l.Split(':')[1].Trim().Split('@')[0]).ToArray();
                Assert.Equal(["lo", "eth0"], links);
                Assert.Contains($"tbf", Tc("-n", ns, "qdisc", "show", "dev", "eth0"));
                Assert.Contains($"inet {EmulatedCluster.NodeAddress(i)}/24", Ip("-n", ns, "addr", "show", "dev", "eth0"));
            }
            // The switch has the bridge and one shaped port per node, and no address of its own.
            string sw = cluster.SwitchNamespace;
            Assert.DoesNotContain("inet ", Ip("-n", sw, "addr", "show"));
            Assert.Equal(cluster.Nodes, Regex.Matches(Tc("-n", sw, "qdisc", "show"), @"^qdisc tbf \S+ dev n\d+ root", RegexOptions.Multiline).Count);
        }
        HostNetwork.AssertNothingLeft(before, Environment.ProcessId, "");
    }

    [Fact]
    public void Link_rates_read_as_tc_writes_them()
    {
        Assert.Equal(1_000_000_000, LinkRate.Parse("1gbit").BitsPerSecond);
        Assert.Equal(200_000_000, LinkRate.Parse("200mbit").BitsPerSecond);
        Assert.Equal(1_500_000_000, LinkRate.Parse("1.5Gbit").BitsPerSecond);
        Assert.Equal(500_000, LinkRate.Parse("500kbit").BitsPerSecond);
        Assert.Equal("200mbit", LinkRate.Parse("200mbit").ToString());
        Assert.Equal(25e6, LinkRate.Parse("200mbit").BytesPerSecond);
        foreach (string bad in new[] { "10mbps", "1g", "fast", "-1gbit", "0mbit", "" })
        {
            var e = Assert.Throws<ArgumentException>(() => LinkRate.Parse(bad));
            Assert.Contains("--link", e.Message);
        }
    }

    [Fact]
    public void The_floor_counts_what_one_hop_carries_less_one_burst()
    {
        var link = LinkRate.Parse("8mbit"); // 1e6 bytes/s, burst 64 KiB
        // 2 ranks: each sends the whole buffer once (half in reduce-scatter, half in all-gather).
        Assert.Equal((1_000_000 - 65536) / 1e6, AllReduceBench.LinkFloorSeconds(1_000_000, 2, link), 9);
        // 4 ranks: 2 x 3/4 of the buffer through each node's one outgoing hop.
        Assert.Equal((1_500_000 - 65536) / 1e6, AllReduceBench.LinkFloorSeconds(1_000_000, 4, link), 9);
        Assert.Equal(0, AllReduceBench.LinkFloorSeconds(1_000_000, 1, link));
    }

    private static IEnumerable<string> Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static string Ip(params string[] args) => Command("ip", args);

    private static string Tc(params string[] args) => Command("tc", args);

    private static string Command(string file, string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)} failed: {error}");
        return output;
    }

    private static void Signal(int pid, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-s", signal, pid.ToString(CultureInfo.InvariantCulture)])
        {
            UseShellExecute = false,
            RedirectStandardError = true,
        })!;
        kill.WaitForExit();
    }

    /// <summary>What a run could leave in the machine's own network namespace, and the engine's namespaces.</summary>
    private sealed record HostNetwork(string Veths, string Bridges, string Qdiscs)
    {
        public static HostNetwork Snapshot() => new(
            Ip("-o", "link", "show", "type", "veth"), Ip("-o", "link", "show", "type", "bridge"), Tc("qdisc", "show"));

        /// <summary>No namespace of <paramref name="owner"/>'s runs exists, and the host's links and qdiscs are as before.</summary>
        public static void AssertNothingLeft(HostNetwork before, int owner, string log)
        {
            string[] left = EmulatedCluster.ExistingNamespaces().Where(n => EmulatedCluster.OwnerPid(n) == owner).ToArray();
            Assert.True(left.Length == 0, $"namespaces left behind: {string.Join(", ", left)}\n{log}");
            HostNetwork after = Snapshot();
            Assert.Equal(before.Veths, after.Veths);
            Assert.Equal(before.Bridges, after.Bridges);
            Assert.Equal(before.Qdiscs, after.Qdiscs);
        }
    }

    /// <summary>The engine run as its own process (<c>dotnet engine.dll ...</c>), its output collected as it comes.</summary>
    private sealed class EngineProcess : IDisposable
    {
        private readonly Process _process;
        private readonly ConcurrentQueue<string> _stdout = new();
        private readonly ConcurrentQueue<string> _log = new();
        private readonly TaskCompletionSource<int[]> _rankPids = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private EngineProcess(Process process) => _process = process;

        public int Pid => _process.Id;
        public string Stdout => string.Join('\n', _stdout);
        public string Log => string.Join('\n', _log);

        public static EngineProcess Start(params string[] args)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(typeof(Program).Assembly.Location);
            foreach (string a in args) psi.ArgumentList.Add(a);
            var run = new EngineProcess(new Process { StartInfo = psi });
            run._process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is null) return;
                run._stdout.Enqueue(e.Data);
                run._log.Enqueue(e.Data);
            };
            run._process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null) return;
                run._log.Enqueue(e.Data);
                Match m = Regex.Match(e.Data, @"^launch: started (.*), each");
                if (m.Success)
                {
                    run._rankPids.TrySetResult(Regex.Matches(m.Groups[1].Value, @"pid (\d+)").Select(p => int.Parse(p.Groups[1].Value, CultureInfo.InvariantCulture)).ToArray());
                }
            };
            run._process.Start();
            run._process.BeginOutputReadLine();
            run._process.BeginErrorReadLine();
            return run;
        }

        public async Task<int[]> RankPidsAsync(TimeSpan limit)
        {
            Task done = await Task.WhenAny(_rankPids.Task, Task.Delay(limit));
            Assert.True(done == _rankPids.Task, $"the launcher did not start its ranks within {limit.TotalSeconds} s:\n{Log}");
            return await _rankPids.Task;
        }

        public async Task WaitForStdoutAsync(string text, TimeSpan limit)
        {
            var clock = Stopwatch.StartNew();
            while (!_stdout.Any(l => l.Contains(text, StringComparison.Ordinal)))
            {
                Assert.True(clock.Elapsed < limit && !_process.HasExited, $"'{text}' did not appear on stdout within {limit.TotalSeconds} s:\n{Log}");
                await Task.Delay(50);
            }
        }

        public async Task<int> WaitAsync(TimeSpan limit)
        {
            using var cts = new CancellationTokenSource(limit);
            try
            {
                await _process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"the run did not end within {limit.TotalSeconds} s:\n{Log}");
            }
            _process.WaitForExit(); // drains the redirected output
            return _process.ExitCode;
        }

        public void Dispose()
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.Dispose();
        }
    }
}

/// <summary>Emulated-node options refused up front, in one line (exit 2), before anything is built; no root needed.</summary>
[Collection("console")]
public class EmulatedNodesOptionTests
{
    [Theory]
    [InlineData("needs --link RATE", "launch", "--nproc-per-node", "1", "--emulate-nodes", "2", "--", "bench", "allreduce")]
    [InlineData("--link '10mbps'", "launch", "--nproc-per-node", "1", "--emulate-nodes", "2", "--link", "10mbps", "--", "bench", "allreduce")]
    [InlineData("leave --nnodes and --node-rank", "launch", "--nproc-per-node", "1", "--nnodes", "2", "--master-port", "29500", "--emulate-nodes", "2", "--link", "1gbit", "--", "bench", "allreduce")]
    [InlineData("give --emulate-nodes N with it", "bench", "allreduce", "--link", "1gbit")]
    [InlineData("does not spread evenly", "bench", "allreduce", "--emulate-nodes", "2", "--nproc", "3", "--link", "1gbit")]
    [InlineData("needs --link RATE", "compare", "--emulate-nodes", "2")]
    [InlineData("give --emulate-nodes N with it", "compare", "--link", "1gbit")]
    public void Refused_up_front_in_one_line(string expected, params string[] args)
    {
        var (code, _, err) = Cli.Run(args);
        Assert.Equal(2, code);
        Assert.Contains(expected, err);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
