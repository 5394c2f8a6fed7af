using System.Diagnostics;

namespace Engine.Comm;

/// <summary>
/// The handle of one asynchronous collective (PyTorch's <c>Work</c>). <see cref="Wait()"/> returns when
/// the result is in the device buffer and visible to work issued afterwards on the caller's
/// <see cref="Engine.Kernels.Device.Stream"/>; it rethrows the operation's failure.
/// </summary>
public sealed class CommWork
{
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Stopwatch _age = Stopwatch.StartNew();
    private readonly TimeSpan _timeout;
    private volatile int _waitingOn = -1;

    /// <summary>The operation name (<c>all_reduce</c>, <c>broadcast</c>, ...).</summary>
    public string Operation { get; }

    /// <summary>Elements the operation moves (its length on this rank).</summary>
    public long Count { get; }

    public bool IsCompleted => _done.Task.IsCompleted;

    /// <summary><see cref="Stopwatch.GetTimestamp"/> when the operation began moving data (its input was ready), or 0.</summary>
    public long StartedTimestamp { get; private set; }

    /// <summary><see cref="Stopwatch.GetTimestamp"/> when the operation completed, or 0.</summary>
    public long CompletedTimestamp { get; private set; }

    internal CommWork(string operation, long count, TimeSpan timeout)
    {
        Operation = operation;
        Count = count;
        _timeout = timeout;
    }

    /// <summary>A handle that is already complete (a no-op collective).</summary>
    internal static CommWork Completed(string operation, long count)
    {
        var work = new CommWork(operation, count, TimeSpan.Zero);
        work.Complete();
        return work;
    }

    /// <summary>Waits under the communicator's timeout.</summary>
    public void Wait() => Wait(_timeout);

    /// <summary>
    /// Waits at most <paramref name="timeout"/> (plus a short grace so that the failing socket or device
    /// wait inside the operation, which names the peer, reports first).
    /// </summary>
    /// <exception cref="CommException">The operation failed, or did not finish in time.</exception>
    public void Wait(TimeSpan timeout)
    {
        TimeSpan limit = timeout == Timeout.InfiniteTimeSpan ? timeout : timeout + TimeSpan.FromSeconds(5);
        bool finished;
        try
        {
            finished = _done.Task.Wait(limit);
        }
        catch (AggregateException)
        {
            finished = true; // failed: reported below with the operation's own exception
        }
        if (!finished)
        {
            int peer = _waitingOn;
            throw new CommTimeoutException(Operation, peer >= 0 ? peer : null, _age.Elapsed,
                $"{Operation} of {Count} elements did not complete within {timeout.TotalSeconds:F1} s " +
                (peer >= 0 ? $"(it was waiting on rank {peer})" : "(it had not started: an earlier collective is still running)") +
                $"; {_age.Elapsed.TotalSeconds:F1} s since it was issued.");
        }
        if (_done.Task.Exception is { } failure)
        {
            Exception inner = failure.InnerException ?? failure;
            if (inner is CommException ce)
            {
                // Rethrow a fresh exception so the waiting thread's stack is in the trace too.
                throw new CommException(ce.Operation, ce.PeerRank, ce.Elapsed, ce.Message, ce) { LostRank = ce.LostRank };
            }
            throw new CommException(Operation, null, _age.Elapsed, $"{Operation} failed: {inner.Message}", inner);
        }
    }

    /// <summary>Waits for every handle in order.</summary>
    public static void WaitAll(IEnumerable<CommWork> works)
    {
        foreach (CommWork w in works)
        {
            w.Wait();
        }
    }

    internal void SetWaitingOn(int peer) => _waitingOn = peer;

    internal void MarkStarted() => StartedTimestamp = Stopwatch.GetTimestamp();

    internal void Complete()
    {
        CompletedTimestamp = Stopwatch.GetTimestamp();
        if (StartedTimestamp == 0) StartedTimestamp = CompletedTimestamp;
        _done.TrySetResult();
    }

    internal void Fail(Exception e) => _done.TrySetException(e);
}
