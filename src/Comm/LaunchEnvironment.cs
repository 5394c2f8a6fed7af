using System.Collections;

namespace Engine.Comm;

/// <summary>
/// Where this process sits in the job, from torchrun's variables: RANK, WORLD_SIZE, LOCAL_RANK,
/// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT. Any launcher that sets them (engine launch, torchrun,
/// an srun or mpirun wrapper) starts ranks the same way. With none set the process is a world of one.
/// </summary>
public sealed record LaunchEnvironment(int Rank, int WorldSize, int LocalRank, int LocalWorldSize, string MasterAddr, int MasterPort)
{
    public static readonly string[] VariableNames = ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"];

    /// <summary>A single process: rank 0 of 1, no store needed.</summary>
    public static LaunchEnvironment Single { get; } = new(0, 1, 0, 1, "127.0.0.1", 0);

    /// <summary>
    /// The port the rendezvous store uses: MASTER_PORT, unless ENGINE_STORE_PORT overrides it, or
    /// torchrun's agent already hosts its own store there (TORCHELASTIC_USE_AGENT_STORE=True), in which
    /// case MASTER_PORT + 1.
    /// </summary>
    public int StorePort { get; init; }

    /// <summary>Reads the process environment.</summary>
    public static LaunchEnvironment FromEnvironment() => FromVariables(Environment.GetEnvironmentVariables());

    /// <summary>Reads <paramref name="vars"/> (name to value); errors name the variable and what was wrong.</summary>
    /// <exception cref="ArgumentException">A variable is missing, not a number, or inconsistent with the others.</exception>
    public static LaunchEnvironment FromVariables(IDictionary vars)
    {
        string? Get(string name) => vars.Contains(name) ? vars[name] as string : null;
        if (Get("RANK") is null && Get("WORLD_SIZE") is null)
        {
            return Single;
        }
        int Int(string name, int? fallback)
        {
            string? s = Get(name);
            if (string.IsNullOrWhiteSpace(s))
            {
                return fallback ?? throw new ArgumentException($"{name} is not set (RANK and WORLD_SIZE are, so a launcher started this process; it must also set {name}).");
            }
            if (!int.TryParse(s.Trim(), out int v))
            {
                throw new ArgumentException($"{name}='{s}' is not an integer.");
            }
            return v;
        }
        int worldSize = Int("WORLD_SIZE", null);
        int rank = Int("RANK", null);
        if (worldSize < 1)
        {
            throw new ArgumentException($"WORLD_SIZE={worldSize}: must be at least 1.");
        }
        if (rank < 0 || rank >= worldSize)
        {
            throw new ArgumentException($"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={worldSize}).");
        }
        int localWorld = Int("LOCAL_WORLD_SIZE", worldSize);
        int localRank = Int("LOCAL_RANK", rank % Math.Max(1, localWorld));
        if (localRank < 0 || localRank >= localWorld)
        {
            throw new ArgumentException($"LOCAL_RANK={localRank} is outside 0..LOCAL_WORLD_SIZE-1 (LOCAL_WORLD_SIZE={localWorld}).");
        }
        string addr = Get("MASTER_ADDR") is { Length: > 0 } a ? a.Trim() : worldSize == 1 ? "127.0.0.1"
            : throw new ArgumentException("MASTER_ADDR is not set: every rank needs the address of rank 0's host.");
        int port = Int("MASTER_PORT", worldSize == 1 ? 0 : null);
        if (port < 0 || port > 65535 || (port == 0 && worldSize > 1))
        {
            throw new ArgumentException($"MASTER_PORT={port}: must be a port in 1..65535 (engine launch --master-port 0 picks one for its children).");
        }
        int storePort = port;
        if (Get("ENGINE_STORE_PORT") is { Length: > 0 })
        {
            storePort = Int("ENGINE_STORE_PORT", null);
        }
        else if (string.Equals(Get("TORCHELASTIC_USE_AGENT_STORE"), "True", StringComparison.OrdinalIgnoreCase) && port > 0)
        {
            storePort = port + 1;
        }
        return new LaunchEnvironment(rank, worldSize, localRank, localWorld, addr, port) { StorePort = storePort };
    }

    /// <summary>The variables a launcher gives the child of global rank <paramref name="rank"/>.</summary>
    public static Dictionary<string, string> ForChild(int rank, int worldSize, int localRank, int localWorldSize, string masterAddr, int masterPort) => new()
    {
        ["RANK"] = rank.ToString(),
        ["WORLD_SIZE"] = worldSize.ToString(),
        ["LOCAL_RANK"] = localRank.ToString(),
        ["LOCAL_WORLD_SIZE"] = localWorldSize.ToString(),
        ["MASTER_ADDR"] = masterAddr,
        ["MASTER_PORT"] = masterPort.ToString(),
    };
}
