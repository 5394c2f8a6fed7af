namespace Engine.Comm;

/// <summary>
/// A collective or the rendezvous failed. The message names the operation, the peer rank it was
/// waiting on (when there is one) and how long it had waited, so that a log line alone says which
/// rank to look at.
/// </summary>
public class CommException : Exception
{
    /// <summary>The operation (<c>all_reduce</c>, <c>rendezvous</c>, ...).</summary>
    public string Operation { get; }

    /// <summary>The rank this one was talking to or waiting on, if any.</summary>
    public int? PeerRank { get; }

    /// <summary>The rank that was lost (its process died or its connections dropped), when known.</summary>
    public int? LostRank { get; init; }

    /// <summary>How long the failing wait had lasted.</summary>
    public TimeSpan Elapsed { get; }

    public CommException(string operation, int? peerRank, TimeSpan elapsed, string message, Exception? inner = null)
        : base(message, inner)
    {
        Operation = operation;
        PeerRank = peerRank;
        Elapsed = elapsed;
    }
}

/// <summary>A blocking wait ran past the communicator's timeout.</summary>
public sealed class CommTimeoutException : CommException
{
    public CommTimeoutException(string operation, int? peerRank, TimeSpan elapsed, string message, Exception? inner = null)
        : base(operation, peerRank, elapsed, message, inner)
    {
    }
}
