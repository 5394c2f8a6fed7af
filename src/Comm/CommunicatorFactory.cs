using System.Net;
using System.Net.Sockets;
using Engine.Comm.Nccl;
using Device = Engine.Kernels.Device;

namespace Engine.Comm;

/// <summary>Builds the communicator a rank needs from torchrun's environment variables.</summary>
public static class CommunicatorFactory
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(300);

    /// <summary>
    /// Reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (see <see cref="LaunchEnvironment"/>); rank 0
    /// hosts the rendezvous store; every rank connects to it and builds the <paramref name="backend"/>
    /// communicator: <c>host</c> (the TCP ring), <c>nccl</c>, or <c>auto</c> (NCCL when every rank is on
    /// CUDA with a GPU of its own and libnccl loads; else the host ring). Ranks agree on auto's choice
    /// through the store.
    /// </summary>
    /// <exception cref="CommException">The rendezvous failed (unreachable store, port in use, WORLD_SIZE disagreement, timeout).</exception>
    /// <exception cref="ArgumentException">The environment or the backend name is invalid.</exception>
    public static ICommunicator FromEnvironment(Device dev, string backend = "auto", TimeSpan? timeout = null, LaunchEnvironment? env = null,
        int sliceBytes = HostRingCommunicator.DefaultSliceBytes)
    {
        ArgumentNullException.ThrowIfNull(dev);
        env ??= LaunchEnvironment.FromEnvironment();
        TimeSpan t = timeout ?? DefaultTimeout;
        string b = backend.Trim().ToLowerInvariant();
        if (b is not ("auto" or "host" or "nccl"))
        {
            throw new ArgumentException($"Unknown communication backend '{backend}': expected host, nccl or auto.", nameof(backend));
        }
        if (env.WorldSize == 1)
        {
            // One rank has no one to meet: no store (with no MASTER_PORT there is not even a port to dial).
            return b == "nccl"
                ? NcclCommunicator.Create(dev, null, 0, 1, t)
                : HostRingCommunicator.Create(dev, null, 0, 1, t, sliceBytes);
        }

        RendezvousServer? server = null;
        RendezvousClient? store = null;
        try
        {
            if (env.Rank == 0)
            {
                server = StartStore(env, t);
            }
            // Rank 0 dials the port its store really bound (the same as StorePort unless that was 0).
            store = RendezvousClient.Connect(env.MasterAddr, server?.Port ?? env.StorePort, env.Rank, env.WorldSize, t);
            bool nccl = b switch
            {
                "nccl" => true,
                "host" => false,
                _ => AgreeOnNccl(dev, env, store, t),
            };
            return nccl
                ? NcclCommunicator.Create(dev, store, env.Rank, env.WorldSize, t, server)
                : HostRingCommunicator.Create(dev, store, env.Rank, env.WorldSize, t, sliceBytes, server);
        }
        catch
        {
            store?.Dispose();
            server?.Dispose();
            throw;
        }
    }

    private static RendezvousServer StartStore(LaunchEnvironment env, TimeSpan timeout)
    {
        IPAddress bind;
        if (!IPAddress.TryParse(env.MasterAddr, out bind!))
        {
            try
            {
                bind = Dns.GetHostAddresses(env.MasterAddr).FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? IPAddress.Any;
            }
            catch (SocketException)
            {
                bind = IPAddress.Any;
            }
        }
        try
        {
            return RendezvousServer.Start(bind, env.StorePort, env.WorldSize, timeout);
        }
        catch (CommException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.AddressNotAvailable })
        {
            // MASTER_ADDR names this host through an address it cannot bind (NAT, alias): listen everywhere.
            return RendezvousServer.Start(IPAddress.Any, env.StorePort, env.WorldSize, timeout);
        }
    }

    /// <summary>Every rank votes; NCCL only if all can use it (one GPU per rank, the library loads).</summary>
    private static bool AgreeOnNccl(Device dev, LaunchEnvironment env, RendezvousClient store, TimeSpan timeout)
    {
        bool mine = dev.IsCuda && env.LocalWorldSize <= Device.CudaCount(dev.Context) && NcclLibrary.TryLoad(out _);
        store.Set($"backend/vote/{env.Rank}", mine ? "nccl" : "host");
        var keys = Enumerable.Range(0, env.WorldSize).Select(r => $"backend/vote/{r}").ToArray();
        store.Wait(keys, timeout);
        return keys.All(k => store.GetString(k, timeout) == "nccl");
    }
}
