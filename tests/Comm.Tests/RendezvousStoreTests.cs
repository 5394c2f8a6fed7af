using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Engine.Comm.Tests;

public class RendezvousStoreTests
{
    private static readonly TimeSpan T = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task SetGetAddAndWaitAcrossClients()
    {
        using var server = RendezvousServer.Start(IPAddress.Loopback, 0, 2);
        using var a = RendezvousClient.Connect("127.0.0.1", server.Port, 0, 2, T);
        using var b = RendezvousClient.Connect("127.0.0.1", server.Port, 1, 2, T);

        var waiting = Task.Run(() => b.GetString("late", T));
        Thread.Sleep(100);
        Assert.False(waiting.IsCompleted);
        a.Set("late", "value");
        Assert.Equal("value", await waiting);

        Assert.Equal(3, a.Add("counter", 3));
        Assert.Equal(1, b.Add("counter", -2));

        var wait = Task.Run(() => a.Wait(["k1", "k2"], T));
        b.Set("k1", [1]);
        Thread.Sleep(50);
        Assert.False(wait.IsCompleted);
        b.Set("k2", [2]);
        Assert.True(await Task.WhenAny(wait, Task.Delay(T)) == wait);
        await wait;
        Assert.Equal(new byte[] { 2 }, a.Get("k2"));
    }

    [Fact]
    public void GetOfAMissingKeyTimesOutWithAClearError()
    {
        using var server = RendezvousServer.Start(IPAddress.Loopback, 0, 1);
        using var a = RendezvousClient.Connect("127.0.0.1", server.Port, 0, 1, T);
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<CommTimeoutException>(() => a.Get("never", TimeSpan.FromMilliseconds(300)));
        Assert.Contains("'never'", e.Message);
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.25, 4);
    }

    [Fact]
    public void StrayAndGarbageConnectionsDoNotDisturbTheStore()
    {
        using var server = RendezvousServer.Start(IPAddress.Loopback, 0, 2, handshakeTimeout: TimeSpan.FromSeconds(1));
        var rng = new Random();
        using var idle = new TcpClient();
        idle.Connect(IPAddress.Loopback, server.Port); // connects and says nothing
        for (int i = 0; i < 5; i++)
        {
            using var garbage = new TcpClient();
            garbage.Connect(IPAddress.Loopback, server.Port);
            var junk = new byte[1 + rng.Next(4096)];
            rng.NextBytes(junk);
            junk[0] = (byte)(i % 2 == 0 ? 1 : 0xFF); // sometimes a plausible command byte, never a valid handshake
            garbage.GetStream().Write(junk);
        }
        using (var halfHello = new TcpClient())
        {
            halfHello.Connect(IPAddress.Loopback, server.Port);
            // A handshake claiming an enormous field, then silence.
            halfHello.GetStream().Write([1, 0x45, 0x4E, 0x47, 0x53, 1, 0, 0, 0]);
        }

        using var a = RendezvousClient.Connect("127.0.0.1", server.Port, 0, 2, T);
        using var b = RendezvousClient.Connect("127.0.0.1", server.Port, 1, 2, T);
        a.Set("x", Encoding.UTF8.GetBytes("still fine"));
        Assert.Equal("still fine", b.GetString("x", T));
        Assert.Null(a.TryGetFailure(TimeSpan.Zero)); // strays never count as lost ranks
    }

    [Fact]
    public void ARankWhoseConnectionDropsIsReportedAsLost()
    {
        using var server = RendezvousServer.Start(IPAddress.Loopback, 0, 3);
        using var a = RendezvousClient.Connect("127.0.0.1", server.Port, 0, 3, T);
        // Rank 2 registers by hand and then vanishes without saying goodbye, as a killed process does.
        using (var raw = new TcpClient())
        {
            raw.Connect(IPAddress.Loopback, server.Port);
            var hello = new StoreWire.Writer().Byte((byte)StoreWire.Command.Hello).UInt32(StoreWire.Magic).Int32(StoreWire.Version).Int32(2).Int32(3).ToArray();
            raw.GetStream().Write(hello);
            Assert.Equal(0, raw.GetStream().ReadByte());
        }
        var failure = a.TryGetFailure(T);
        Assert.NotNull(failure);
        Assert.Equal(2, failure.Value.LostRank);
        // Pending and later waits fail at once instead of running to their timeout.
        var clock = Stopwatch.StartNew();
        var e = Assert.ThrowsAny<CommException>(() => a.Get("never", T));
        Assert.Contains("rank 2 was lost", e.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2));
    }

    [Fact]
    public void AClientSayingGoodbyeIsNotLost()
    {
        using var server = RendezvousServer.Start(IPAddress.Loopback, 0, 2);
        using var a = RendezvousClient.Connect("127.0.0.1", server.Port, 0, 2, T);
        RendezvousClient.Connect("127.0.0.1", server.Port, 1, 2, T).Dispose();
        Assert.Null(a.TryGetFailure(TimeSpan.FromMilliseconds(300)));
    }

    [Fact]
    public void DuplicateRankIsRefused()
    {
        using var server = RendezvousServer.Start(IPAddress.Loopback, 0, 2);
        using var a = RendezvousClient.Connect("127.0.0.1", server.Port, 1, 2, T);
        var e = Assert.ThrowsAny<CommException>(() => RendezvousClient.Connect("127.0.0.1", server.Port, 1, 2, T));
        Assert.Contains("RANK=1", e.Message);
    }
}
