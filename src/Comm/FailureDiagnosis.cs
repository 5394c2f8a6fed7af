using System.Globalization;

namespace Engine.Comm;

/// <summary>
/// Turns one rank's failed collective into the job-level story, the same for every backend: the rank
/// asks the rendezvous store which rank the job lost first, so that every survivor names the same one,
/// and tells the store what it saw when the store does not know yet.
/// </summary>
/// <remarks>
/// A dead process's store connection drops at once, so the store usually already knows who died. A
/// hung rank is different: every rank around it times out at about the same moment, each on its own
/// neighbour. So a rank that timed out on a peer first publishes "I wait on that peer" and follows the
/// other ranks' such records to the rank that waits on nobody: the one that stalled.
/// </remarks>
public sealed class FailureDiagnosis
{
    private static readonly TimeSpan RecordGrace = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan StoreGrace = TimeSpan.FromSeconds(2);

    private readonly int _rank;
    private readonly RendezvousClient? _store;

    /// <param name="rank">This rank.</param>
    /// <param name="store">The job's store; without one (a world of one) the diagnosis is the local error alone.</param>
    public FailureDiagnosis(int rank, RendezvousClient? store)
    {
        _rank = rank;
        _store = store;
    }

    /// <summary>
    /// The error to give the caller for <paramref name="e"/>, which ended <paramref name="op"/> after
    /// <paramref name="elapsed"/>: a <see cref="CommException"/> (a <see cref="CommTimeoutException"/>
    /// when the rank timed out) naming the operation, this rank, the lost rank when known and the job's
    /// first failure. A refusal that wraps <paramref name="broken"/> (the communicator's earlier
    /// failure) is returned as it is: that story was already told.
    /// </summary>
    public CommException Diagnose(string op, Exception e, TimeSpan elapsed, CommException? broken)
    {
        CommException local = e as CommException
            ?? new CommException(op, null, elapsed, $"{op} on rank {_rank} failed after {elapsed.TotalSeconds:F2} s: {e.Message}", e);
        if (broken is not null && ReferenceEquals(local.InnerException, broken))
        {
            return local;
        }
        int? lost = local.LostRank;
        string? jobReason = null;
        if (_store is not null && lost is null)
        {
            try
            {
                if (local is CommTimeoutException && local.PeerRank is int hung && _store.TryGetFailure(TimeSpan.FromMilliseconds(200)) is null)
                {
                    // The peer this rank timed out on may itself be waiting on another rank: blame the end of the wait chain.
                    int culprit = FollowWaits(hung);
                    _store.ReportFailure(culprit, culprit == hung
                        ? $"rank {hung} stopped responding during {op} (rank {_rank} timed out waiting on it)"
                        : $"rank {culprit} stopped responding during {op} (rank {_rank} timed out waiting on rank {hung}, which was waiting on it in turn)");
                }
                if (_store.TryGetFailure(StoreGrace) is { } f)
                {
                    lost = f.LostRank >= 0 ? f.LostRank : null;
                    jobReason = f.Reason;
                }
                else if (local.PeerRank is int peer)
                {
                    _store.ReportFailure(peer, $"rank {_rank} lost rank {peer} during {op}");
                }
                else
                {
                    _store.ReportFailure(-1, $"rank {_rank}: {local.Message}");
                }
            }
            catch (CommException storeFailure)
            {
                lost = storeFailure.LostRank;
                jobReason = storeFailure.Message;
            }
        }
        string message = lost is int l
            ? $"{op} failed on rank {_rank} after {elapsed.TotalSeconds:F2} s: {jobReason ?? $"rank {l} was lost"}. This rank saw: {local.Message}"
            : $"{op} failed on rank {_rank}: {local.Message}" + (jobReason is null ? "" : $" The job had failed: {jobReason}.");
        TimeSpan waited = local.Elapsed > TimeSpan.Zero ? local.Elapsed : elapsed;
        return local is CommTimeoutException
            ? new CommTimeoutException(op, local.PeerRank, waited, message, local) { LostRank = lost }
            : new CommException(op, local.PeerRank, waited, message, local) { LostRank = lost };
    }

    /// <summary>
    /// Publishes "this rank waits on <paramref name="peer"/>" and follows the other ranks' records (each
    /// given a short grace to appear) to the rank that waits on nobody. A cycle singles out no rank; then the peer.
    /// </summary>
    private int FollowWaits(int peer)
    {
        _store!.Set(WaitsKey(_rank), peer.ToString(CultureInfo.InvariantCulture));
        var seen = new HashSet<int> { _rank };
        int r = peer;
        while (seen.Add(r))
        {
            try
            {
                r = int.Parse(_store.GetString(WaitsKey(r), RecordGrace), CultureInfo.InvariantCulture);
            }
            catch (CommTimeoutException)
            {
                return r;
            }
        }
        return peer;
    }

    /// <summary>The store key where rank <paramref name="rank"/> records the peer it timed out on.</summary>
    public static string WaitsKey(int rank) => $"comm/waits/{rank.ToString(CultureInfo.InvariantCulture)}";
}
