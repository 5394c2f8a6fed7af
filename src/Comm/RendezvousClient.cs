using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Engine.Comm;

/// <summary>
/// One rank's connection to the rendezvous store. Calls are thread-safe (one request at a time) and
/// every call is bounded by a timeout; errors name the store's address and what was waited for.
/// The connection stays open for the job's lifetime: the store treats its loss as the rank's death.
/// </summary>
public sealed class RendezvousClient : IDisposable
{
    private readonly Socket _socket;
    private readonly object _gate = new();
    private readonly string _where;
    private bool _closed;

    public int Rank { get; }

    public int WorldSize { get; }

    /// <summary>This machine's address as the store sees it: the one other ranks can reach us on.</summary>
    public IPAddress LocalAddress => ((IPEndPoint)_socket.LocalEndPoint!).Address;

    /// <summary>Bound on each call (a get or wait may pass its own).</summary>
    public TimeSpan Timeout { get; set; }

    private RendezvousClient(Socket socket, string where, int rank, int worldSize, TimeSpan timeout)
    {
        _socket = socket;
        _where = where;
        Rank = rank;
        WorldSize = worldSize;
        Timeout = timeout;
    }

    /// <summary>
    /// Connects to the store at <paramref name="host"/>:<paramref name="port"/>, retrying while nothing
    /// listens yet (rank 0 may start later), and registers as <paramref name="rank"/> of
    /// <paramref name="worldSize"/>.
    /// </summary>
    /// <exception cref="CommException">No store answered within <paramref name="timeout"/>, or it refused this rank.</exception>
    public static RendezvousClient Connect(string host, int port, int rank, int worldSize, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        string where = $"{host}:{port}";
        IPAddress address = ResolveAddress(host);
        string lastError = "nothing tried";
        while (true)
        {
            TimeSpan left = timeout - clock.Elapsed;
            if (left <= TimeSpan.Zero)
            {
                throw new CommTimeoutException("rendezvous", 0, clock.Elapsed,
                    $"rank {rank} could not reach the rendezvous store at {where} within {timeout.TotalSeconds:F1} s " +
                    $"(last error: {lastError}). Is rank 0 running, and are MASTER_ADDR/MASTER_PORT right?");
            }
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                using (var cts = new CancellationTokenSource(left))
                {
                    socket.ConnectAsync(new IPEndPoint(address, port), cts.Token).AsTask().GetAwaiter().GetResult();
                }
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                socket.Dispose();
                lastError = e is SocketException se ? se.SocketErrorCode.ToString() : "connect timed out";
                Thread.Sleep(TimeSpan.FromMilliseconds(Math.Min(100, Math.Max(1, left.TotalMilliseconds))));
                continue;
            }

            try
            {
                var client = new RendezvousClient(socket, where, rank, worldSize, timeout);
                client.Hello(clock, timeout);
                return client;
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    private static IPAddress ResolveAddress(string host)
    {
        if (IPAddress.TryParse(host, out IPAddress? ip))
        {
            return ip;
        }
        try
        {
            IPAddress[] all = Dns.GetHostAddresses(host);
            return all.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? all.First();
        }
        catch (Exception e) when (e is SocketException or InvalidOperationException)
        {
            throw new CommException("rendezvous", 0, TimeSpan.Zero, $"MASTER_ADDR '{host}' does not resolve to an address: {e.Message}", e);
        }
    }

    private void Hello(Stopwatch clock, TimeSpan timeout)
    {
        TimeSpan left = timeout - clock.Elapsed;
        _socket.ReceiveTimeout = (int)Math.Clamp(left.TotalMilliseconds, 1, int.MaxValue);
        try
        {
            _socket.Send(new StoreWire.Writer().Byte((byte)StoreWire.Command.Hello).UInt32(StoreWire.Magic)
                .Int32(StoreWire.Version).Int32(Rank).Int32(WorldSize).ToArray());
            var status = (StoreWire.Status)StoreWire.ReadByte(_socket);
            if (status == StoreWire.Status.Error)
            {
                throw new CommException("rendezvous", 0, clock.Elapsed, $"the rendezvous store at {_where} refused rank {Rank}: {StoreWire.ReadString(_socket)}.");
            }
            if (status != StoreWire.Status.Ok)
            {
                throw new InvalidDataException($"status byte {(byte)status}");
            }
        }
        catch (Exception e) when (e is SocketException or EndOfStreamException or InvalidDataException)
        {
            string why = e is SocketException { SocketErrorCode: SocketError.TimedOut or SocketError.WouldBlock }
                ? $"did not answer the handshake within {left.TotalSeconds:F1} s"
                : $"answered the handshake with something else ({e.Message})";
            throw new CommException("rendezvous", 0, clock.Elapsed,
                $"the program listening at {_where} {why}: it is not this job's rendezvous store (is MASTER_PORT used by another program?).", e);
        }
    }

    /// <summary>Stores <paramref name="value"/> under <paramref name="key"/> (overwriting).</summary>
    public void Set(string key, byte[] value)
        => Call("set", key, new StoreWire.Writer().Byte((byte)StoreWire.Command.Set).String(key).Bytes(value), Timeout, _ => 0);

    public void Set(string key, string value) => Set(key, Encoding.UTF8.GetBytes(value));

    /// <summary>Waits until <paramref name="key"/> exists and returns its value.</summary>
    public byte[] Get(string key, TimeSpan? timeout = null)
    {
        TimeSpan t = timeout ?? Timeout;
        return Call("get", key, new StoreWire.Writer().Byte((byte)StoreWire.Command.Get).String(key).Int32(Millis(t)), t,
            s => StoreWire.ReadBytes(s, StoreWire.MaxValueBytes));
    }

    public string GetString(string key, TimeSpan? timeout = null) => Encoding.UTF8.GetString(Get(key, timeout));

    /// <summary>Adds <paramref name="delta"/> to the 64-bit counter <paramref name="key"/> (created at 0) and returns the new value.</summary>
    public long Add(string key, long delta)
        => Call("add", key, new StoreWire.Writer().Byte((byte)StoreWire.Command.Add).String(key).Int64(delta), Timeout, StoreWire.ReadInt64);

    /// <summary>Waits until every key in <paramref name="keys"/> exists.</summary>
    public void Wait(IReadOnlyList<string> keys, TimeSpan? timeout = null)
    {
        TimeSpan t = timeout ?? Timeout;
        var w = new StoreWire.Writer().Byte((byte)StoreWire.Command.Wait).Int32(keys.Count);
        foreach (string k in keys)
        {
            w.String(k);
        }
        Call("wait", string.Join(",", keys), w.Int32(Millis(t)), t, _ => 0);
    }

    /// <summary>Tells the store the job failed, suspecting <paramref name="suspectRank"/> (-1: unknown). The first report wins.</summary>
    public void ReportFailure(int suspectRank, string reason)
        => Call("report", "", new StoreWire.Writer().Byte((byte)StoreWire.Command.Report).Int32(suspectRank).String(reason), Timeout, _ => 0);

    /// <summary>
    /// The job's first failure as the store recorded it (the lost rank, or -1, and why), waiting up to
    /// <paramref name="wait"/> for one to be recorded; null if none was.
    /// </summary>
    public (int LostRank, string Reason)? TryGetFailure(TimeSpan wait)
    {
        try
        {
            return Call<(int, string)?>("failure", "", new StoreWire.Writer().Byte((byte)StoreWire.Command.Failure).Int32(Millis(wait)), wait,
                s => (StoreWire.ReadInt32(s), StoreWire.ReadString(s)));
        }
        catch (CommTimeoutException)
        {
            return null;
        }
    }

    private static int Millis(TimeSpan t) => (int)Math.Clamp(t.TotalMilliseconds, 0, int.MaxValue - 10_000);

    private T Call<T>(string op, string key, StoreWire.Writer request, TimeSpan timeout, Func<Socket, T> readReply)
    {
        var clock = Stopwatch.StartNew();
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            try
            {
                // The store answers a timed wait itself; the socket's own timeout only catches a dead store.
                _socket.ReceiveTimeout = Millis(timeout + TimeSpan.FromSeconds(5));
                _socket.SendTimeout = Millis(timeout + TimeSpan.FromSeconds(5));
                _socket.Send(request.ToArray());
                var status = (StoreWire.Status)StoreWire.ReadByte(_socket);
                return status switch
                {
                    StoreWire.Status.Ok => readReply(_socket),
                    StoreWire.Status.Timeout => throw new CommTimeoutException($"store {op}", null, clock.Elapsed,
                        $"store {op} '{key}' on rank {Rank} timed out after {clock.Elapsed.TotalSeconds:F1} s: not every rank got this far (a rank is slow, hung, or was never started)."),
                    StoreWire.Status.Error => throw Failed(op, key, clock, StoreWire.ReadString(_socket)),
                    _ => throw new InvalidDataException($"status byte {(byte)status}"),
                };
            }
            catch (Exception e) when (e is SocketException or EndOfStreamException or InvalidDataException or IOException)
            {
                throw new CommException($"store {op}", 0, clock.Elapsed,
                    $"store {op} '{key}' on rank {Rank}: lost the rendezvous store at {_where} after {clock.Elapsed.TotalSeconds:F1} s " +
                    $"({e.Message}); rank 0 hosts it, so rank 0 was probably lost.", e) { LostRank = 0 };
            }
        }
    }

    private CommException Failed(string op, string key, Stopwatch clock, string reason)
        => new($"store {op}", null, clock.Elapsed, $"store {op} '{key}' on rank {Rank} gave up after {clock.Elapsed.TotalSeconds:F1} s: the job failed: {reason}.");

    /// <summary>Says goodbye, so the store does not count this rank as lost.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_closed)
            {
                return;
            }
            _closed = true;
            try
            {
                _socket.SendTimeout = 1000;
                _socket.Send(new[] { (byte)StoreWire.Command.Bye });
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
            _socket.Dispose();
        }
    }
}
