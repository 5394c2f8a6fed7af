using System.Net;
using System.Net.Sockets;

namespace Engine.Comm;

/// <summary>
/// The rendezvous key-value store (PyTorch's TCPStore), hosted by rank 0 at MASTER_ADDR:MASTER_PORT.
/// Ranks register with a handshake (rank, world size); set/get/wait/add let them exchange the NCCL
/// unique id and the ring's peer addresses. Each connection is served on its own task, so a stray
/// or garbage connection is dropped without touching the others.
/// </summary>
/// <remarks>
/// The store also watches the job: a registered rank whose connection drops without saying goodbye
/// (its process died) marks the job failed with that rank as the lost one, and every pending wait
/// fails at once. Survivors ask the store which rank was lost so that their errors name it.
/// </remarks>
public sealed class RendezvousServer : IDisposable
{
    private readonly TcpListener _listener;
    private readonly int _worldSize;
    private readonly TimeSpan _handshakeTimeout;
    private readonly CancellationTokenSource _stop = new();
    private readonly object _gate = new();
    private readonly Dictionary<string, byte[]> _data = new(StringComparer.Ordinal);
    private readonly HashSet<int> _registered = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private string? _failure;
    private int _lostRank = -1;
    private readonly Task _acceptLoop;

    /// <summary>The port the store listens on (the one asked for, or the one the OS picked for port 0).</summary>
    public int Port { get; }

    public IPAddress Address { get; }

    private RendezvousServer(TcpListener listener, int worldSize, TimeSpan handshakeTimeout)
    {
        _listener = listener;
        _worldSize = worldSize;
        _handshakeTimeout = handshakeTimeout;
        var ep = (IPEndPoint)listener.LocalEndpoint;
        Port = ep.Port;
        Address = ep.Address;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    /// <summary>Starts listening on <paramref name="address"/>:<paramref name="port"/> (0 = any free port).</summary>
    /// <exception cref="CommException">The port is in use or the address is not this machine's.</exception>
    public static RendezvousServer Start(IPAddress address, int port, int worldSize, TimeSpan? handshakeTimeout = null)
    {
        var listener = new TcpListener(address, port);
        try
        {
            listener.Server.ExclusiveAddressUse = false;
            listener.Start(backlog: 128);
        }
        catch (SocketException e)
        {
            listener.Dispose();
            string why = e.SocketErrorCode switch
            {
                SocketError.AddressAlreadyInUse => "the port is already in use (another job or program holds it: pick another --master-port, or 0 for a free one)",
                SocketError.AddressNotAvailable => "that address is not one of this machine's (MASTER_ADDR must name rank 0's host)",
                SocketError.AccessDenied => "permission denied (ports below 1024 need privileges)",
                _ => e.Message,
            };
            throw new CommException("rendezvous", null, TimeSpan.Zero,
                $"rank 0 could not host the rendezvous store on {address}:{port}: {why}.", e);
        }
        return new RendezvousServer(listener, worldSize, handshakeTimeout ?? TimeSpan.FromSeconds(30));
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                continue; // a connection reset before accept completed: not our concern
            }
            client.NoDelay = true;
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        int rank = -1;
        bool goodbye = false;
        using var stream = new NetworkStream(socket, ownsSocket: true);
        var reader = new StoreWire.Reader(stream);
        try
        {
            // The handshake must arrive promptly; anything else is a stray connection and is dropped.
            using (var hello = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token))
            {
                hello.CancelAfter(_handshakeTimeout);
                if (await reader.ByteAsync(hello.Token).ConfigureAwait(false) != (byte)StoreWire.Command.Hello
                    || await reader.UInt32Async(hello.Token).ConfigureAwait(false) != StoreWire.Magic)
                {
                    return;
                }
                int version = await reader.Int32Async(hello.Token).ConfigureAwait(false);
                int claimedRank = await reader.Int32Async(hello.Token).ConfigureAwait(false);
                int claimedWorld = await reader.Int32Async(hello.Token).ConfigureAwait(false);
                string? refusal = Register(version, claimedRank, claimedWorld);
                if (refusal is not null)
                {
                    await ReplyAsync(stream, new StoreWire.Writer().Byte((byte)StoreWire.Status.Error).String(refusal)).ConfigureAwait(false);
                    return;
                }
                rank = claimedRank;
                await ReplyAsync(stream, new StoreWire.Writer().Byte((byte)StoreWire.Status.Ok)).ConfigureAwait(false);
            }

            while (!_stop.IsCancellationRequested)
            {
                var command = (StoreWire.Command)await reader.ByteAsync(_stop.Token).ConfigureAwait(false);
                if (command == StoreWire.Command.Bye)
                {
                    goodbye = true;
                    return;
                }
                StoreWire.Writer reply = await HandleAsync(command, reader).ConfigureAwait(false);
                await ReplyAsync(stream, reply).ConfigureAwait(false);
            }
        }
        catch (Exception) when (_stop.IsCancellationRequested)
        {
            // shutting down
        }
        catch (Exception e) when (e is IOException or SocketException or EndOfStreamException or InvalidDataException or OperationCanceledException or ObjectDisposedException)
        {
            // The peer vanished or spoke garbage; only this connection is affected.
        }
        finally
        {
            if (rank >= 0)
            {
                lock (_gate)
                {
                    _registered.Remove(rank);
                }
                if (!goodbye && !_stop.IsCancellationRequested)
                {
                    Fail(rank, $"rank {rank} was lost (its connection to the rendezvous store dropped: the process died or was killed)");
                }
            }
        }
    }

    private string? Register(int version, int rank, int worldSize)
    {
        if (version != StoreWire.Version)
        {
            return $"store protocol version {version} is not this store's {StoreWire.Version} (mixed engine builds?)";
        }
        if (worldSize != _worldSize)
        {
            string reason = $"WORLD_SIZE disagrees between ranks: rank {rank} says {worldSize}, rank 0 (the store host) says {_worldSize}";
            Fail(-1, reason);
            return reason;
        }
        if (rank < 0 || rank >= _worldSize)
        {
            return $"rank {rank} is outside 0..{_worldSize - 1}";
        }
        lock (_gate)
        {
            if (!_registered.Add(rank))
            {
                string reason = $"two processes claim RANK={rank}";
                FailLocked(-1, reason);
                return reason;
            }
        }
        return null;
    }

    private async Task<StoreWire.Writer> HandleAsync(StoreWire.Command command, StoreWire.Reader reader)
    {
        CancellationToken ct = _stop.Token;
        switch (command)
        {
            case StoreWire.Command.Set:
            {
                string key = await reader.StringAsync(ct).ConfigureAwait(false);
                byte[] value = await reader.BytesAsync(StoreWire.MaxValueBytes, ct).ConfigureAwait(false);
                lock (_gate)
                {
                    _data[key] = value;
                    PulseLocked();
                }
                return Ok();
            }
            case StoreWire.Command.Add:
            {
                string key = await reader.StringAsync(ct).ConfigureAwait(false);
                long delta = await reader.Int64Async(ct).ConfigureAwait(false);
                long value;
                lock (_gate)
                {
                    value = (_data.TryGetValue(key, out byte[]? old) && old.Length == 8 ? BitConverter.ToInt64(old) : 0) + delta;
                    _data[key] = BitConverter.GetBytes(value);
                    PulseLocked();
                }
                return Ok().Int64(value);
            }
            case StoreWire.Command.Get:
            case StoreWire.Command.Wait:
            {
                int count = command == StoreWire.Command.Get ? 1 : await reader.Int32Async(ct).ConfigureAwait(false);
                if (count < 0 || count > 4096)
                {
                    throw new InvalidDataException($"wait on {count} keys");
                }
                var keys = new string[count];
                for (int i = 0; i < count; i++)
                {
                    keys[i] = await reader.StringAsync(ct).ConfigureAwait(false);
                }
                int timeoutMs = await reader.Int32Async(ct).ConfigureAwait(false);
                (StoreWire.Status status, string? failure) = await WaitForKeysAsync(keys, timeoutMs).ConfigureAwait(false);
                var reply = new StoreWire.Writer().Byte((byte)status);
                if (status == StoreWire.Status.Error)
                {
                    return reply.String(failure!);
                }
                if (status == StoreWire.Status.Ok && command == StoreWire.Command.Get)
                {
                    lock (_gate)
                    {
                        reply.Bytes(_data[keys[0]]);
                    }
                }
                return reply;
            }
            case StoreWire.Command.Report:
            {
                int suspect = await reader.Int32Async(ct).ConfigureAwait(false);
                string reason = await reader.StringAsync(ct).ConfigureAwait(false);
                Fail(suspect, reason);
                return Ok();
            }
            case StoreWire.Command.Failure:
            {
                int timeoutMs = await reader.Int32Async(ct).ConfigureAwait(false);
                var deadline = DateTime.UtcNow + TimeSpan.FromMilliseconds(Math.Max(0, timeoutMs));
                while (true)
                {
                    Task changed;
                    lock (_gate)
                    {
                        if (_failure is not null)
                        {
                            return Ok().Int32(_lostRank).String(_failure);
                        }
                        changed = _changed.Task;
                    }
                    TimeSpan left = deadline - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero)
                    {
                        return new StoreWire.Writer().Byte((byte)StoreWire.Status.Timeout);
                    }
                    await Task.WhenAny(changed, Task.Delay(left, ct)).ConfigureAwait(false);
                }
            }
            default:
                throw new InvalidDataException($"unknown store command {(byte)command}");
        }
    }

    private async Task<(StoreWire.Status, string?)> WaitForKeysAsync(string[] keys, int timeoutMs)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMilliseconds(Math.Max(0, timeoutMs));
        while (true)
        {
            Task changed;
            lock (_gate)
            {
                if (_failure is not null)
                {
                    return (StoreWire.Status.Error, _failure);
                }
                if (keys.All(_data.ContainsKey))
                {
                    return (StoreWire.Status.Ok, null);
                }
                changed = _changed.Task;
            }
            TimeSpan left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                return (StoreWire.Status.Timeout, null);
            }
            await Task.WhenAny(changed, Task.Delay(left, _stop.Token)).ConfigureAwait(false);
            _stop.Token.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Marks the job failed (first failure wins) and wakes every waiter.</summary>
    private void Fail(int lostRank, string reason)
    {
        lock (_gate)
        {
            FailLocked(lostRank, reason);
        }
    }

    private void FailLocked(int lostRank, string reason)
    {
        if (_failure is null)
        {
            _failure = reason;
            _lostRank = lostRank;
        }
        PulseLocked();
    }

    private void PulseLocked()
    {
        TaskCompletionSource old = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        old.TrySetResult();
    }

    private static StoreWire.Writer Ok() => new StoreWire.Writer().Byte((byte)StoreWire.Status.Ok);

    private static async Task ReplyAsync(NetworkStream stream, StoreWire.Writer reply)
        => await stream.WriteAsync(reply.ToArray()).ConfigureAwait(false);

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        try
        {
            _acceptLoop.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
        }
        _listener.Dispose();
    }
}
