using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Engine.Comm;

/// <summary>
/// Builds the host ring: each rank listens on an ephemeral port of the address it reaches the store
/// from, publishes it, connects to its right neighbour and accepts its left one, which proves itself
/// with a hello carrying this job's session number (so a stray connection is never taken for a peer).
/// </summary>
internal static class RingSetup
{
    /// <summary>"RING": the first word of the hello and of every operation's header.</summary>
    public const uint Magic = 0x474E4952;

    public static (RingLink ToRight, RingLink FromLeft) Connect(RendezvousClient store, int rank, int n, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        int right = (rank + 1) % n, left = (rank - 1 + n) % n;
        IPAddress local = store.LocalAddress;
        using var listener = new Socket(local.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(local, 0));
        listener.Listen(16);
        var ep = (IPEndPoint)listener.LocalEndPoint!;

        if (rank == 0)
        {
            store.Set("ring/session", BitConverter.GetBytes(Random.Shared.NextInt64()));
        }
        long session = BitConverter.ToInt64(store.Get("ring/session", timeout));
        store.Set($"ring/addr/{rank}", $"{ep.Address}|{ep.Port}");
        string[] peer = store.GetString($"ring/addr/{right}", timeout - clock.Elapsed).Split('|');
        var rightEp = new IPEndPoint(IPAddress.Parse(peer[0]), int.Parse(peer[1]));

        Socket? outgoing = null;
        Socket? incoming = null;
        try
        {
            outgoing = ConnectWithRetry(rightEp, right, timeout, clock);
            var hello = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(hello, Magic);
            BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(4), rank);
            BinaryPrimitives.WriteInt64LittleEndian(hello.AsSpan(8), session);
            outgoing.SendTimeout = (int)Math.Max(1, (timeout - clock.Elapsed).TotalMilliseconds);
            outgoing.Send(hello);
            incoming = AcceptFrom(listener, left, session, timeout, clock);
            return (new RingLink(outgoing, right, timeout), new RingLink(incoming, left, timeout));
        }
        catch
        {
            outgoing?.Dispose();
            incoming?.Dispose();
            throw;
        }
    }

    private static Socket ConnectWithRetry(IPEndPoint ep, int peer, TimeSpan timeout, Stopwatch clock)
    {
        while (true)
        {
            var s = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            TimeSpan left = timeout - clock.Elapsed;
            try
            {
                using var cts = new CancellationTokenSource(left > TimeSpan.Zero ? left : TimeSpan.FromMilliseconds(1));
                s.ConnectAsync(ep, cts.Token).AsTask().GetAwaiter().GetResult();
                return s;
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                s.Dispose();
                if (clock.Elapsed >= timeout)
                {
                    throw new CommTimeoutException("rendezvous", peer, clock.Elapsed,
                        $"rendezvous: could not connect to rank {peer} at {ep} within {timeout.TotalSeconds:F1} s ({e.Message}).", e);
                }
                Thread.Sleep(50);
            }
        }
    }

    /// <summary>Accepts until the left neighbour of this session says hello; strays are closed and ignored.</summary>
    private static Socket AcceptFrom(Socket listener, int left, long session, TimeSpan timeout, Stopwatch clock)
    {
        while (true)
        {
            TimeSpan remaining = timeout - clock.Elapsed;
            if (remaining <= TimeSpan.Zero)
            {
                throw new CommTimeoutException("rendezvous", left, clock.Elapsed,
                    $"rendezvous: rank {left} did not connect within {timeout.TotalSeconds:F1} s.");
            }
            Socket s;
            try
            {
                using var cts = new CancellationTokenSource(remaining);
                s = listener.AcceptAsync(cts.Token).AsTask().GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                continue;
            }
            try
            {
                s.ReceiveTimeout = (int)Math.Clamp((timeout - clock.Elapsed).TotalMilliseconds, 1, 10_000);
                var hello = new byte[16];
                int got = 0;
                while (got < hello.Length)
                {
                    int k = s.Receive(hello.AsSpan(got));
                    if (k == 0)
                    {
                        break;
                    }
                    got += k;
                }
                if (got == hello.Length && BinaryPrimitives.ReadUInt32LittleEndian(hello) == Magic
                    && BinaryPrimitives.ReadInt32LittleEndian(hello.AsSpan(4)) == left
                    && BinaryPrimitives.ReadInt64LittleEndian(hello.AsSpan(8)) == session)
                {
                    return s;
                }
            }
            catch (SocketException)
            {
            }
            s.Dispose();
        }
    }
}
