using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Engine.Tests;

namespace Engine.Comm.Tests;

/// <summary>A lost rank, a stalled rank, a port in use, a WORLD_SIZE disagreement and an unreachable store: clear errors, never a hang.</summary>
[Collection("processes")]
public class FaultTests
{
    // Long enough for three .NET processes to start on two busy cores (the rendezvous shares it);
    // the kill tests never wait for it, since a dead peer's connection drops at once.
    private static readonly TimeSpan ShortTimeout = TimeSpan.FromSeconds(20);

    [Fact]
    public void RankKilledDuringAllReduceMakesEverySurvivorFailNamingIt()
    {
        int port = Launcher.FreePort();
        var clock = Stopwatch.StartNew();
        var ranks = Enumerable.Range(0, 3).Select(r => RankJob.StartRank(r, 3, port, "kill", "1", ShortTimeout.TotalSeconds.ToString())).ToList();
        var results = ranks.Select(p => RankJob.Finish(p, TimeSpan.FromSeconds(60), clock)).ToList();
        Assert.Contains("KILLING", results[1].Stdout);
        Assert.Equal(137, results[1].ExitCode);
        foreach (int survivor in new[] { 0, 2 })
        {
            RankJob.Result r = results[survivor];
            Assert.True(r.ExitCode == 3, $"rank {survivor} exit {r.ExitCode}:\n{r.Stdout}\n{r.Stderr}");
            Assert.Contains("lost=1", r.Stderr);
            Assert.Contains("rank 1 was lost", r.Stderr);
            Assert.Contains("all_reduce", r.Stderr);
        }
        // Startup of three .NET processes on a busy machine dominates; the failure itself is detected at once.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(45), $"took {clock.Elapsed}");
    }

    [Fact]
    public void LaunchStopsTheJobWhenARankDiesMidAllReduce()
    {
        RankJob.Result job = RankJob.Launch(new LaunchOptions(3), TimeSpan.FromSeconds(60), "kill", "2", ShortTimeout.TotalSeconds.ToString());
        Assert.NotEqual(0, job.ExitCode);
        Assert.NotEqual(130, job.ExitCode); // not our safety cancellation: the launcher noticed by itself
        Assert.DoesNotContain("NO ERROR", job.Stdout);
        Assert.Contains("launch: rank", job.Stderr);
    }

    [Fact]
    public void StalledRankMakesTheOthersTimeOutNamingIt()
    {
        int port = Launcher.FreePort();
        var clock = Stopwatch.StartNew();
        var ranks = Enumerable.Range(0, 3).Select(r => RankJob.StartRank(r, 3, port, "stall", "2", "6")).ToList();
        var survivors = new[] { 0, 1 }.Select(r => RankJob.Finish(ranks[r], TimeSpan.FromSeconds(60), clock)).ToList();
        ranks[2].Kill();
        RankJob.Finish(ranks[2], TimeSpan.FromSeconds(10), clock);
        for (int r = 0; r < 2; r++)
        {
            Assert.True(survivors[r].ExitCode == 3, $"rank {r} exit {survivors[r].ExitCode}:\n{survivors[r].Stdout}\n{survivors[r].Stderr}");
            Assert.True(survivors[r].Stderr.Contains("rank 2"), $"rank {r} does not name rank 2:\n{survivors[r].Stderr}");
        }
        // Rank 0 receives from rank 2, times out and names it; rank 1 learns it through the store.
        Assert.Contains("timed out", survivors[0].Stderr);
    }

    [Fact]
    public void RankExitingNonZeroStopsTheOthersAndLaunchReturnsItsCode()
    {
        RankJob.Result job = RankJob.Launch(new LaunchOptions(3) { StopGrace = TimeSpan.FromSeconds(1) }, TimeSpan.FromSeconds(60), "exit", "1", "7");
        Assert.Equal(7, job.ExitCode);
        Assert.Contains("rank 1 exited with code 7", job.Stderr);
        Assert.True(job.Elapsed < TimeSpan.FromSeconds(40), $"took {job.Elapsed} (the others sleep 60 s)");
    }

    [Fact]
    public async Task CancellingLaunchStopsEveryRank()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        using var cancel = new CancellationTokenSource();
        var clock = Stopwatch.StartNew();
        var run = Task.Run(() => Launcher.Run(new LaunchOptions(2) { StopGrace = TimeSpan.FromSeconds(1) }, RankJob.Worker, ["exit", "-1", "0"],
            TextWriter.Synchronized(stdout), TextWriter.Synchronized(stderr), cancel.Token));
        // Wait until both ranks are up, then "Ctrl-C".
        while (stdout.ToString().Split("SLEEPING").Length < 3 && clock.Elapsed < TimeSpan.FromSeconds(40))
        {
            Thread.Sleep(50);
        }
        cancel.Cancel();
        Assert.True(await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(15))) == run, "launch did not stop after cancellation");
        Assert.Equal(130, await run);
        // A cancellation is a SIGINT: forwarded to every rank, said so, and 128 + 2 returned.
        Assert.Contains("received SIGINT; forwarding it to rank 0, rank 1", stderr.ToString());
        Assert.Contains("exiting with 130", stderr.ToString());
    }

    [Fact]
    public void LaunchGivesEachRankTorchrunsVariables()
    {
        RankJob.Result job = RankJob.Launch(new LaunchOptions(3), TimeSpan.FromSeconds(60), "env");
        Assert.Equal(0, job.ExitCode);
        string? port = null;
        for (int r = 0; r < 3; r++)
        {
            string[] env = job.LinesOf(r).Single(l => l.StartsWith("ENV ", StringComparison.Ordinal)).Split(' ');
            Assert.Equal([r.ToString(), "3", r.ToString(), "3", "127.0.0.1"], env[1..6]);
            Assert.NotEqual("0", env[6]); // --master-port 0 was resolved to a real port...
            port ??= env[6];
            Assert.Equal(port, env[6]); // ...the same for every rank
        }
    }

    [Fact]
    public void PortAlreadyInUseIsAClearErrorOnEveryRank()
    {
        using var squatter = new TcpListener(IPAddress.Loopback, 0);
        squatter.Start(); // listens, never answers
        int port = ((IPEndPoint)squatter.LocalEndpoint).Port;
        var timeout = TimeSpan.FromSeconds(2);

        var e0 = Assert.ThrowsAny<CommException>(() => CommunicatorFactory.FromEnvironment(TestDevice.Cpu, "host", timeout, Env(0, 2, port)));
        Assert.Contains("already in use", e0.Message);

        var clock = Stopwatch.StartNew();
        var e1 = Assert.ThrowsAny<CommException>(() => CommunicatorFactory.FromEnvironment(TestDevice.Cpu, "host", timeout, Env(1, 2, port)));
        Assert.Contains("not this job's rendezvous store", e1.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
    }

    [Fact]
    public void UnreachableMasterIsAClearErrorWithinTheTimeout()
    {
        int port = Launcher.FreePort(); // nothing listens there
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<CommTimeoutException>(() => CommunicatorFactory.FromEnvironment(TestDevice.Cpu, "host", TimeSpan.FromSeconds(2), Env(1, 2, port)));
        Assert.Contains($"127.0.0.1:{port}", e.Message);
        Assert.Contains("could not reach the rendezvous store", e.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"took {clock.Elapsed}");
    }

    [Fact]
    public void WorldSizeDisagreementFailsEveryRankQuickly()
    {
        int port = Launcher.FreePort();
        var timeout = TimeSpan.FromSeconds(20); // the failure must come from the check, long before this
        var clock = Stopwatch.StartNew();
        var rank0 = Task.Run(() => CommunicatorFactory.FromEnvironment(TestDevice.Cpu, "host", timeout, Env(0, 2, port)));
        var rank1 = Task.Run(() => CommunicatorFactory.FromEnvironment(TestDevice.Cpu, "host", timeout, Env(1, 3, port)));
        foreach (var t in new[] { rank0, rank1 })
        {
            var e = Assert.ThrowsAny<CommException>(() =>
            {
                try
                {
                    t.GetAwaiter().GetResult().Dispose();
                }
                catch (AggregateException a)
                {
                    throw a.InnerException!;
                }
            });
            Assert.Contains("WORLD_SIZE disagrees", e.Message);
        }
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
    }

    private static LaunchEnvironment Env(int rank, int world, int port)
        => LaunchEnvironment.FromVariables(LaunchEnvironment.ForChild(rank, world, rank, world, "127.0.0.1", port));
}
