using System.Diagnostics;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Comm;

/// <summary>
/// The communicator's own thread and what every operation goes through on it, in call order: wait
/// until the caller's stream has reached the point where the operation was issued (its input is
/// written), run the operation, complete or fail its <see cref="CommWork"/>. The first failure is
/// diagnosed once and breaks the queue: later operations are refused with that story.
/// </summary>
internal sealed class CollectiveQueue : IDisposable
{
    private readonly Device _dev;
    private readonly int _rank;
    private readonly SerialWorker _worker;
    private readonly Func<string, Exception, TimeSpan, CommException> _diagnose;
    private volatile CommException? _broken;

    /// <param name="diagnose">Turns an operation's failure (operation, error, time it had run) into the error its caller sees.</param>
    public CollectiveQueue(Device dev, int rank, string threadName, Func<string, Exception, TimeSpan, CommException> diagnose)
    {
        _dev = dev;
        _rank = rank;
        _diagnose = diagnose;
        // The thread issues device copies, so it must have the accelerator's context bound.
        _worker = new SerialWorker(threadName, () => dev.Accelerator.Bind());
    }

    /// <summary>The failure that broke the queue, or null.</summary>
    public CommException? Broken => _broken;

    /// <summary>Queues <paramref name="body"/> (given the operation's clock and handle) behind everything posted before.</summary>
    public CommWork Post(string op, long count, TimeSpan timeout, Action<Stopwatch, CommWork> body)
    {
        var work = new CommWork(op, count, timeout);
        if (_broken is { } broken)
        {
            work.Fail(Refusal(op, broken, "an earlier collective failed and the communicator is broken"));
            return work;
        }
        ProfilingMarker? ready = CaptureStreamPoint();
        _worker.Post(() =>
        {
            var clock = Stopwatch.StartNew();
            try
            {
                if (_broken is { } b)
                {
                    throw Refusal(op, b, "the communicator is broken");
                }
                WaitForStreamPoint(ready);
                work.MarkStarted();
                body(clock, work);
                work.Complete();
            }
            catch (Exception e)
            {
                CommException failure = _diagnose(op, e, clock.Elapsed);
                _broken ??= failure;
                work.Fail(failure);
            }
            finally
            {
                ready?.Dispose();
            }
        });
        return work;
    }

    private CommException Refusal(string op, CommException broken, string why)
        => new(op, broken.PeerRank, TimeSpan.Zero, $"{op} on rank {_rank} refused: {why}: {broken.Message}", broken) { LostRank = broken.LostRank };

    /// <summary>Marks where the caller's stream is, so the operation reads its input only after the kernels that wrote it.</summary>
    private ProfilingMarker? CaptureStreamPoint()
    {
        try
        {
            return _dev.Stream.AddProfilingMarker();
        }
        catch (NotSupportedException)
        {
            // A context without profiling: fall back to waiting here, on the caller's thread.
            _dev.Stream.Synchronize();
            return null;
        }
    }

    /// <remarks>
    /// Not bounded by the timeout: the kernels before the call are this rank's own and do not wait on
    /// peers. (ILGPU keeps the CUDA event of a marker internal, so there is no event query to poll.)
    /// </remarks>
    private static void WaitForStreamPoint(ProfilingMarker? marker) => marker?.Synchronize();

    /// <summary>Lets queued operations finish (bounded wait), then ends the thread.</summary>
    public void Dispose() => _worker.Dispose();
}
