using Engine.Comm;
using Engine.Tests;

namespace Engine.Runner.Tests;

/// <summary>
/// Whether tests that build emulated nodes (network namespaces, veth links, tc qdiscs) can run here. They
/// are skipped, saying why, only where that cannot be done (not root, no iproute2, not Linux) and CI is
/// unset; in CI (CI set, root, iproute2) they run anyway and fail with the launcher's reason.
/// </summary>
internal static class EmulatedNodesAvailability
{
    public static string? SkipReason =>
        OutsideCi.SkipReason(EmulatedCluster.Unavailable() is string why ? $"{why} (in CI these tests run, and fail instead)" : null);
}

/// <summary>A fact that builds emulated nodes (see <see cref="EmulatedNodesAvailability"/>).</summary>
public sealed class EmulatedNodesFactAttribute : FactAttribute
{
    public EmulatedNodesFactAttribute() => Skip = EmulatedNodesAvailability.SkipReason;
}

/// <summary>A theory that builds emulated nodes (see <see cref="EmulatedNodesAvailability"/>).</summary>
public sealed class EmulatedNodesTheoryAttribute : TheoryAttribute
{
    public EmulatedNodesTheoryAttribute() => Skip = EmulatedNodesAvailability.SkipReason;
}
