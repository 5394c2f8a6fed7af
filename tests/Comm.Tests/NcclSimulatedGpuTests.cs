using System.Diagnostics;
using System.Text.RegularExpressions;
using Engine.Tests;

namespace Engine.Comm.Tests;

/// <summary>
/// NcclCommunicator on ILGPU buffers as on a GPU host, without one: each rank is a process with a simulated GPU
/// (../shared/gpusim) and the fake NCCL of native/, which runs the collectives between the processes, makes the
/// device's primary context current as NCCL does, and refuses buffers and streams of any other context.
/// </summary>
[Collection("processes")]
[Trait("Category", "SimulatedGpu")]
public partial class NcclSimulatedGpuTests
{
    // Every rank starts .NET and a simulated GPU on two busy cores: the joins take seconds.
    private const string Timeout = "60";

    [FakeNcclTheory]
    [InlineData(2)]
    [InlineData(4)]
    public void Every_collective_on_ILGPU_buffers_matches_the_reference_and_the_communicator_is_destroyed_once(int ranks)
    {
        int seed = Random.Shared.Next();
        RankJob.Result job = RankJob.Launch(new LaunchOptions(ranks) { ExtraEnvironment = FakeNccl.Variables() }, TimeSpan.FromSeconds(240),
            "collectives", seed.ToString(), "1024", Timeout, "nccl", "cuda");
        CollectiveProcessTests.AssertEveryRankPassedAndAgrees(job, ranks, seed);
        for (int r = 0; r < ranks; r++)
        {
            // Destroyed on dispose, never aborted; so the hashes came from the fake, not from another NCCL.
            Assert.Contains("FAKE_NCCL inits_in_flight=0 aborts=0 live=0", job.LinesOf(r));
        }
    }

    /// <summary>
    /// The fault the primary context fixes: with ILGPU's own context (ENGINE_CUDA_CONTEXT=own, the engine's handling
    /// before) the buffers and the stream given to NCCL belong to a context NCCL never makes current, and it fails.
    /// </summary>
    [FakeNcclFact]
    public void Buffers_in_ILGPUs_own_context_are_refused_by_NCCL()
    {
        RankJob.Result job = RankJob.Launch(new LaunchOptions(2) { ExtraEnvironment = FakeNccl.Variables(("ENGINE_CUDA_CONTEXT", "own")) },
            TimeSpan.FromSeconds(180), "collectives", "1", "1024", Timeout, "nccl", "cuda");
        string all = job.Stdout + job.Stderr;
        Assert.True(job.ExitCode != 0, $"the job passed with ILGPU's own context:\n{all}");
        Assert.Contains("unhandled cuda error", all, StringComparison.Ordinal);
        Assert.Contains("not to device 0's primary context", all, StringComparison.Ordinal);
    }

    [FakeNcclFact]
    public void A_rank_that_stops_taking_part_makes_the_others_time_out()
    {
        RankJob.Result job = RankJob.Launch(new LaunchOptions(2) { ExtraEnvironment = FakeNccl.Variables() }, TimeSpan.FromSeconds(180),
            "stall", "1", "8", "nccl", "cuda");
        List<string> rank0 = job.LinesOf(0).ToList();
        string all = job.Stdout + job.Stderr;
        string error = rank0.FirstOrDefault(l => l.StartsWith("ERROR after", StringComparison.Ordinal)) ?? throw new Xunit.Sdk.XunitException($"rank 0 did not fail:\n{all}");
        Assert.Contains("8.0 s timeout", error, StringComparison.Ordinal);
        Assert.Contains("the communicator was aborted", error, StringComparison.Ordinal);
        double seconds = double.Parse(SecondsAfter().Match(error).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(seconds, 8, 20);
    }

    /// <summary>
    /// A peer process dies: NCCL reports it through ncclCommGetAsyncError, the watchdog aborts, the operation fails,
    /// and Dispose does not abort a second time (the fake stops the process on a use after free).
    /// </summary>
    [FakeNcclFact]
    public void A_rank_that_dies_is_reported_and_the_communicator_is_aborted_once()
    {
        int port = Launcher.FreePort();
        var clock = Stopwatch.StartNew();
        var ranks = Enumerable.Range(0, 2).Select(r => RankJob.StartRank(r, 2, port, FakeNccl.Variables(), "kill", "1", Timeout, "nccl", "cuda")).ToList();
        var results = ranks.Select(p => RankJob.Finish(p, TimeSpan.FromSeconds(150), clock)).ToList();
        Assert.Contains("KILLING", results[1].Stdout + results[1].Stderr);
        RankJob.Result survivor = results[0];
        string all = survivor.Stdout + "\n" + survivor.Stderr;
        Assert.True(survivor.ExitCode == 3, $"rank 0 exit {survivor.ExitCode}:\n{all}");
        Assert.Contains("remote process exited", all, StringComparison.Ordinal);
        Assert.Contains("all_reduce", all, StringComparison.Ordinal);
        Assert.DoesNotContain("FATAL", all, StringComparison.Ordinal);
        Assert.Contains("FAKE_NCCL inits_in_flight=0 aborts=1 live=0", all, StringComparison.Ordinal);
    }

    /// <summary>An init that never completes is abandoned at the timeout by aborting it: no thread is left inside NCCL.</summary>
    [FakeNcclFact]
    public void An_init_that_hangs_is_aborted_at_the_timeout()
    {
        RankJob.Result job = RankJob.Launch(new LaunchOptions(1) { ExtraEnvironment = FakeNccl.Variables(("FAKE_NCCL_INIT", "hang")) },
            TimeSpan.FromSeconds(120), "nccl-init-hang", "3");
        List<string> lines = job.LinesOf(0).ToList();
        string all = job.Stdout + job.Stderr;
        string timeout = lines.FirstOrDefault(l => l.StartsWith("TIMEOUT after", StringComparison.Ordinal)) ?? throw new Xunit.Sdk.XunitException($"no timeout:\n{all}");
        Assert.Contains("ncclCommInitRankConfig", timeout, StringComparison.Ordinal);
        Assert.InRange(double.Parse(SecondsAfter().Match(timeout).Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 3, 10);
        Assert.Contains("FAKE_NCCL inits_in_flight=0 aborts=1 live=0", lines);
    }

    [GeneratedRegex(@"after ([0-9.]+) s")]
    private static partial Regex SecondsAfter();
}
