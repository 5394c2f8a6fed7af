namespace Engine.Comm;

/// <summary>What <c>engine launch</c> was asked for (torchrun's options).</summary>
/// <param name="NprocPerNode">Ranks started on this node.</param>
/// <param name="Nnodes">Nodes in the job; global rank = NodeRank x NprocPerNode + local rank.</param>
/// <param name="MasterPort">Rank 0's store port; 0 picks a free one (single node only).</param>
/// <param name="OnlyRank0Stdout">Pass rank 0's standard output through unprefixed and drop the other ranks' (benchmarks); standard error is always shown, prefixed.</param>
public sealed record LaunchOptions(
    int NprocPerNode,
    int Nnodes = 1,
    int NodeRank = 0,
    string MasterAddr = "127.0.0.1",
    int MasterPort = 0,
    bool OnlyRank0Stdout = false)
{
    /// <summary>Extra variables every child gets.</summary>
    public IReadOnlyDictionary<string, string> ExtraEnvironment { get; init; } = new Dictionary<string, string>();

    /// <summary>How long stopped ranks get between SIGTERM and SIGKILL.</summary>
    public TimeSpan StopGrace { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// When above 0, the launcher builds that many emulated nodes on this machine (see
    /// <see cref="EmulatedCluster"/>) joined by links of <see cref="Link"/>, and starts
    /// <see cref="NprocPerNode"/> ranks inside each; <see cref="Nnodes"/>, <see cref="NodeRank"/> and
    /// <see cref="MasterAddr"/> are then the emulated cluster's.
    /// </summary>
    public int EmulatedNodes { get; init; }

    /// <summary>Each emulated node's link rate, both ways (required with <see cref="EmulatedNodes"/>).</summary>
    public LinkRate? Link { get; init; }
}
