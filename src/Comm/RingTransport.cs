using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Engine.Comm;

/// <summary>
/// The ring's two links and the thread that sends on the right one: runs a <see cref="RingSchedule"/>
/// over staged host memory, receiving (and reducing) on the caller's thread while the sending thread
/// follows it slice by slice.
/// </summary>
internal sealed class RingTransport : IDisposable
{
    private readonly RingLink _toRight;
    private readonly RingLink _fromLeft;
    private readonly SerialWorker _sender;
    private float[] _scratch = [];
    private TimeSpan _timeout;

    public int Left => _fromLeft.Peer;

    public int Right => _toRight.Peer;

    public RingTransport(RingLink toRight, RingLink fromLeft, int rank, TimeSpan timeout)
    {
        _toRight = toRight;
        _fromLeft = fromLeft;
        _timeout = timeout;
        _sender = new SerialWorker($"comm-host-send-rank{rank}");
    }

    public TimeSpan Timeout
    {
        get => _timeout;
        set
        {
            _timeout = value;
            _toRight.SetTimeout(value);
            _fromLeft.SetTimeout(value);
        }
    }

    /// <summary>Sends <paramref name="mine"/> to the right and receives as many bytes from the left.</summary>
    public void Exchange(ReadOnlySpan<byte> mine, Span<byte> theirs, string op, Stopwatch clock, CommWork work)
    {
        work.SetWaitingOn(Right);
        _toRight.Send(mine, op, clock);
        work.SetWaitingOn(Left);
        _fromLeft.Receive(theirs, op, clock);
    }

    /// <summary>
    /// Runs <paramref name="schedule"/> on <paramref name="data"/>: step j receives its block from the
    /// left (copying or reducing each slice) while the sending thread sends step j's block to the
    /// right, each slice as soon as <see cref="RingSchedule.ReceivedSlicesNeededToSend"/> allows.
    /// </summary>
    /// <param name="packed">Each float slot holds two 16-bit floats of this format: the reduce adds them as such (a 16-bit all-reduce).</param>
    public unsafe void Run(float* data, RingSchedule schedule, string op, Stopwatch clock, CommWork work, Engine.Kernels.Float16Format? packed = null)
    {
        if (_scratch.Length < schedule.SliceElements)
        {
            _scratch = new float[schedule.SliceElements];
        }
        var progress = new RingProgress();
        nint basePtr = (nint)data;
        Task sending = _sender.Post(() => SendSteps(basePtr, schedule, progress, op, clock));
        try
        {
            for (int j = 0; j < schedule.Steps.Count; j++)
            {
                RingStep step = schedule.Steps[j];
                for (long k = 0, slices = schedule.SliceCount(step.Receive.Length); k < slices; k++)
                {
                    RingBlock slice = schedule.Slice(step.Receive, k);
                    var dst = new Span<float>(data + slice.Offset, (int)slice.Length);
                    work.SetWaitingOn(Left);
                    if (step.Action == RingReceive.Copy)
                    {
                        _fromLeft.Receive(MemoryMarshal.AsBytes(dst), op, clock);
                    }
                    else
                    {
                        Span<float> incoming = _scratch.AsSpan(0, dst.Length);
                        _fromLeft.Receive(MemoryMarshal.AsBytes(incoming), op, clock);
                        if (packed is Engine.Kernels.Float16Format format)
                        {
                            HostMath.Add16(MemoryMarshal.Cast<float, ushort>(dst), MemoryMarshal.Cast<float, ushort>(incoming), format);
                        }
                        else
                        {
                            HostMath.Add(dst, incoming);
                        }
                        if (step.Action == RingReceive.ReduceAndAverage)
                        {
                            HostMath.Divide(dst, schedule.WorldSize);
                        }
                    }
                    progress.Advance();
                }
            }
        }
        catch (Exception e)
        {
            progress.Fail(e);
            Abort();
            WaitQuietly(sending);
            throw progress.FirstError!;
        }
        work.SetWaitingOn(Right);
        if (!sending.Wait(_timeout + TimeSpan.FromSeconds(1)))
        {
            throw new CommTimeoutException(op, Right, clock.Elapsed, $"{op}: sending to rank {Right} did not finish within {_timeout.TotalSeconds:F1} s.");
        }
        if (progress.FirstError is { } failed)
        {
            throw failed;
        }
    }

    private unsafe void SendSteps(nint basePtr, RingSchedule schedule, RingProgress progress, string op, Stopwatch clock)
    {
        float* data = (float*)basePtr;
        try
        {
            for (int j = 0; j < schedule.Steps.Count; j++)
            {
                RingStep step = schedule.Steps[j];
                for (long k = 0, slices = schedule.SliceCount(step.Send.Length); k < slices; k++)
                {
                    long needed = schedule.ReceivedSlicesNeededToSend(j, k);
                    if (needed > 0 && !progress.WaitFor(needed, _timeout + TimeSpan.FromSeconds(1)))
                    {
                        return; // the receiving side failed (or stalled past its own timeout) and reports it
                    }
                    RingBlock slice = schedule.Slice(step.Send, k);
                    _toRight.Send(new ReadOnlySpan<byte>(data + slice.Offset, (int)slice.Length * sizeof(float)), op, clock);
                }
            }
        }
        catch (Exception e)
        {
            progress.Fail(e);
            Abort(); // unblock the receiving side, which then reports this error
        }
    }

    /// <summary>
    /// One-way bandwidth from rank 0 to rank 1 over the ring's links (bytes per second), in messages of
    /// at most <paramref name="messageBytes"/>; rank 1 acknowledges each iteration when the ring has two ranks.
    /// </summary>
    public double PointToPoint(int rank, int worldSize, long bytes, int iterations, int messageBytes, Stopwatch clock, CommWork work)
    {
        var buffer = new byte[Math.Max(1, Math.Min(bytes, messageBytes))];
        var ack = new byte[1];
        var timer = Stopwatch.StartNew();
        for (int it = 0; it < iterations; it++)
        {
            for (long left = bytes; left > 0;)
            {
                int n = (int)Math.Min(left, buffer.Length);
                if (rank == 0)
                {
                    work.SetWaitingOn(1);
                    _toRight.Send(buffer.AsSpan(0, n), "p2p_bandwidth", clock);
                }
                else
                {
                    work.SetWaitingOn(0);
                    _fromLeft.Receive(buffer.AsSpan(0, n), "p2p_bandwidth", clock);
                }
                left -= n;
            }
            // For 2 ranks rank 1's right link leads back to 0; for more the ack would go around the
            // ring, which is why only the send is timed then.
            if (worldSize == 2)
            {
                if (rank == 1)
                {
                    _toRight.Send(ack, "p2p_bandwidth", clock);
                }
                else
                {
                    _fromLeft.Receive(ack, "p2p_bandwidth", clock);
                }
            }
        }
        return bytes * (double)iterations / timer.Elapsed.TotalSeconds;
    }

    /// <summary>Closes both links at once, so the neighbours' pending reads and writes fail now rather than at their timeout.</summary>
    public void Abort()
    {
        _toRight.Abort();
        _fromLeft.Abort();
    }

    public void Dispose()
    {
        _sender.Dispose();
        _toRight.Dispose();
        _fromLeft.Dispose();
    }

    private static void WaitQuietly(Task t)
    {
        try
        {
            t.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
    }

    /// <summary>Slices received so far, shared by the receiving and sending threads; the first error wins.</summary>
    private sealed class RingProgress
    {
        private readonly object _gate = new();
        private long _done;

        public Exception? FirstError { get; private set; }

        public void Advance()
        {
            lock (_gate)
            {
                _done++;
                Monitor.PulseAll(_gate);
            }
        }

        public void Fail(Exception e)
        {
            lock (_gate)
            {
                FirstError ??= e;
                Monitor.PulseAll(_gate);
            }
        }

        /// <summary>False if the ring failed, or the target was not reached in time.</summary>
        public bool WaitFor(long target, TimeSpan timeout)
        {
            var clock = Stopwatch.StartNew();
            lock (_gate)
            {
                while (_done < target && FirstError is null)
                {
                    TimeSpan left = timeout - clock.Elapsed;
                    if (left <= TimeSpan.Zero || !Monitor.Wait(_gate, left))
                    {
                        return _done >= target && FirstError is null;
                    }
                }
                return FirstError is null;
            }
        }
    }
}
