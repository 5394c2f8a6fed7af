using System.Net;

namespace Engine.Comm.Tests;

/// <summary>The failure story both communicators tell, against an in-process store of a three-rank job.</summary>
public sealed class FailureDiagnosisTests : IDisposable
{
    private static readonly TimeSpan T = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Elapsed = TimeSpan.FromSeconds(1.5);

    private readonly RendezvousServer _server;
    private readonly RendezvousClient[] _ranks;

    public FailureDiagnosisTests()
    {
        _server = RendezvousServer.Start(IPAddress.Loopback, 0, 3);
        _ranks = Enumerable.Range(0, 3).Select(r => RendezvousClient.Connect("127.0.0.1", _server.Port, r, 3, T)).ToArray();
    }

    public void Dispose()
    {
        foreach (RendezvousClient c in _ranks)
        {
            c.Dispose();
        }
        _server.Dispose();
    }

    [Fact]
    public void AnErrorThatIsNotACommunicationErrorIsWrappedNamingTheOperationRankAndTime()
    {
        var cause = new InvalidOperationException("device copy failed");
        CommException e = new FailureDiagnosis(2, null).Diagnose("all_gather", cause, Elapsed, null);
        Assert.Equal("all_gather", e.Operation);
        Assert.Null(e.LostRank);
        Assert.Contains("all_gather failed on rank 2", e.Message);
        Assert.Contains("after 1.50 s", e.Message);
        Assert.Contains("device copy failed", e.Message);
        Assert.Same(cause, e.InnerException!.InnerException);
    }

    [Fact]
    public void ASurvivorNamesTheRankTheStoreRecordedAsLost()
    {
        _ranks[2].ReportFailure(2, "rank 2 was lost (its connection to the rendezvous store dropped)");
        var seen = new CommException("all_reduce", 1, Elapsed, "all_reduce: lost rank 1 while receiving from it (ConnectionReset).");

        CommException e = new FailureDiagnosis(0, _ranks[0]).Diagnose("all_reduce", seen, Elapsed, null);

        Assert.Equal(2, e.LostRank);
        Assert.Equal(1, e.PeerRank);
        Assert.IsNotType<CommTimeoutException>(e);
        Assert.Contains("rank 2 was lost (its connection", e.Message);
        Assert.Contains("This rank saw: all_reduce: lost rank 1", e.Message);
    }

    [Fact]
    public void ATimeoutFollowsTheRanksWaitRecordsToTheRankThatStalled()
    {
        // Rank 1 timed out on rank 2 and said so; rank 2 records nothing (it is hung). Rank 0 timed out on rank 1.
        _ranks[1].Set(FailureDiagnosis.WaitsKey(1), "2");
        var seen = new CommTimeoutException("all_reduce", 1, Elapsed, "all_reduce: timed out receiving from rank 1.");

        CommException e = new FailureDiagnosis(0, _ranks[0]).Diagnose("all_reduce", seen, Elapsed, null);

        Assert.IsType<CommTimeoutException>(e);
        Assert.Equal(2, e.LostRank);
        Assert.Contains("rank 2 stopped responding during all_reduce", e.Message);
        Assert.Contains("waiting on rank 1, which was waiting on it in turn", e.Message);
    }

    [Fact]
    public void TheFirstRankToSeeALostPeerTellsTheStoreSoTheOthersNameIt()
    {
        var seen = new CommException("broadcast", 1, Elapsed, "broadcast: rank 1 closed its connection.");
        CommException first = new FailureDiagnosis(0, _ranks[0]).Diagnose("broadcast", seen, Elapsed, null);
        Assert.Contains("broadcast failed on rank 0: broadcast: rank 1 closed its connection.", first.Message);

        var later = new CommException("broadcast", 0, Elapsed, "broadcast: lost rank 0 while sending to it.");
        CommException second = new FailureDiagnosis(2, _ranks[2]).Diagnose("broadcast", later, Elapsed, null);
        Assert.Equal(1, second.LostRank);
        Assert.Contains("rank 0 lost rank 1 during broadcast", second.Message);
    }

    [Fact]
    public void AFailureWithoutAPeerBecomesTheJobsFailureForTheOthers()
    {
        // NCCL's errors name no peer: the job learns what happened, but no rank is blamed.
        var seen = new CommException("all_reduce", null, TimeSpan.Zero, "ncclAllReduce failed: unhandled cuda error.");
        CommException first = new FailureDiagnosis(1, _ranks[1]).Diagnose("all_reduce", seen, Elapsed, null);
        Assert.Null(first.LostRank);
        Assert.Equal(Elapsed, first.Elapsed); // the operation's time when the error carries none

        CommException other = new FailureDiagnosis(0, _ranks[0]).Diagnose("all_reduce", new TimeoutException("watchdog"), Elapsed, null);
        Assert.Null(other.LostRank);
        Assert.Contains("The job had failed: rank 1: ncclAllReduce failed: unhandled cuda error.", other.Message);
    }

    [Fact]
    public void ARefusalAfterTheFirstFailureIsPassedOnAsItIs()
    {
        var broken = new CommException("all_reduce", 1, Elapsed, "the first failure") { LostRank = 1 };
        var refusal = new CommException("barrier", 1, TimeSpan.Zero, "barrier on rank 0 refused: the first failure", broken) { LostRank = 1 };
        Assert.Same(refusal, new FailureDiagnosis(0, _ranks[0]).Diagnose("barrier", refusal, Elapsed, broken));
        Assert.Null(_ranks[0].TryGetFailure(TimeSpan.Zero)); // and the store was not told twice
    }
}
