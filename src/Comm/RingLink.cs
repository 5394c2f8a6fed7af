using System.Diagnostics;
using System.Net.Sockets;

namespace Engine.Comm;

/// <summary>
/// One direction of the ring: a TCP connection to a neighbour rank. Every send and receive is bounded by
/// the timeout, and failures become <see cref="CommException"/>s naming the operation, the peer and the
/// time waited.
/// </summary>
internal sealed class RingLink : IDisposable
{
    private readonly Socket _socket;
    private int _timeoutMs;

    public int Peer { get; }

    public RingLink(Socket socket, int peer, TimeSpan timeout)
    {
        _socket = socket;
        _socket.NoDelay = true;
        Peer = peer;
        SetTimeout(timeout);
    }

    public void SetTimeout(TimeSpan timeout)
    {
        _timeoutMs = timeout == Timeout.InfiniteTimeSpan ? 0 : (int)Math.Clamp(timeout.TotalMilliseconds, 1, int.MaxValue);
        _socket.ReceiveTimeout = _timeoutMs;
        _socket.SendTimeout = _timeoutMs;
    }

    public void Send(ReadOnlySpan<byte> data, string op, Stopwatch opClock)
    {
        long started = opClock.ElapsedTicks;
        try
        {
            while (data.Length > 0)
            {
                int n = _socket.Send(data);
                data = data[n..];
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            throw Failure(op, "sending to", opClock, started, e);
        }
    }

    public void Receive(Span<byte> into, string op, Stopwatch opClock)
    {
        long started = opClock.ElapsedTicks;
        try
        {
            while (into.Length > 0)
            {
                int n = _socket.Receive(into);
                if (n == 0)
                {
                    throw new CommException(op, Peer, opClock.Elapsed,
                        $"{op}: rank {Peer} closed its connection after {opClock.Elapsed.TotalSeconds:F2} s (it exited, died, or failed itself).");
                }
                into = into[n..];
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            throw Failure(op, "receiving from", opClock, started, e);
        }
    }

    private CommException Failure(string op, string doing, Stopwatch opClock, long startedTicks, Exception e)
    {
        TimeSpan waited = TimeSpan.FromSeconds((opClock.ElapsedTicks - startedTicks) / (double)Stopwatch.Frequency);
        if (e is SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock })
        {
            return new CommTimeoutException(op, Peer, opClock.Elapsed,
                $"{op}: timed out {doing} rank {Peer}: no progress for {waited.TotalSeconds:F1} s (timeout {_timeoutMs / 1000.0:F1} s; " +
                $"{opClock.Elapsed.TotalSeconds:F1} s since the operation started). Rank {Peer} is hung, very slow, or not in this collective.", e);
        }
        string what = e is SocketException se ? se.SocketErrorCode.ToString() : "connection closed locally";
        return new CommException(op, Peer, opClock.Elapsed,
            $"{op}: lost rank {Peer} while {doing} it after {opClock.Elapsed.TotalSeconds:F2} s ({what}).", e);
    }

    /// <summary>Closes at once, so the peer's pending reads and writes fail now rather than at its timeout.</summary>
    public void Abort()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
        _socket.Close();
    }

    public void Dispose() => _socket.Dispose();
}
