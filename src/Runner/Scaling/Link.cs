using System.Globalization;

namespace Engine.Runner.Scaling;

/// <summary>
/// The link between devices: effective bandwidth per direction, latency per transfer, and whether
/// devices copy to each other directly (peer-to-peer) or through host memory. Without peer-to-peer a
/// device-to-device copy is a copy up to the host and a second copy down: this model charges both
/// crossings one after the other (the time doubles), as a staged copy without pipelining would.
/// Host-to-device copies use the host link (<see cref="HostGBs"/>: PCIe, even when the devices share NVLink).
/// </summary>
public sealed record Link(string Name, double BandwidthGBs, double LatencyUs, bool PeerToPeer, double? HostBandwidthGBs = null)
{
    /// <summary>
    /// Effective (not nominal) x16 bandwidths; consumer PCIe cards have peer-to-peer disabled by the
    /// driver, so the PCIe presets default to through-the-host.
    /// </summary>
    public static readonly IReadOnlyDictionary<string, Link> Presets = new Dictionary<string, Link>
    {
        ["pcie3"] = new("PCIe 3.0 x16", 12, 10, false),
        ["pcie4"] = new("PCIe 4.0 x16", 24, 10, false),
        ["pcie5"] = new("PCIe 5.0 x16", 48, 10, false),
        ["nvlink"] = new("NVLink", 300, 3, true, HostBandwidthGBs: 24),
    };

    public static Link Preset(string name) => Presets.TryGetValue(name.ToLowerInvariant(), out Link? l) ? l
        : throw new ArgumentException($"--link must be one of {string.Join(", ", Presets.Keys)}, got '{name}'.");

    /// <summary>Link crossings per device-to-device copy: 1 peer-to-peer, 2 through the host.</summary>
    public int Crossings => PeerToPeer ? 1 : 2;

    /// <summary>Bandwidth between a device and the host (the device-to-device link's unless given).</summary>
    public double HostGBs => HostBandwidthGBs ?? BandwidthGBs;

    /// <summary>Bandwidth of each crossing of a device-to-device copy: the peer link, or the host link twice.</summary>
    public double PathGBs => PeerToPeer ? BandwidthGBs : HostGBs;

    /// <summary>Seconds for one host-to-device copy of <paramref name="bytes"/>.</summary>
    public double HostToDevice(double bytes) => bytes <= 0 ? 0 : LatencyUs * 1e-6 + bytes / (HostGBs * 1e9);

    /// <summary>Seconds for one device-to-device copy of <paramref name="bytes"/>.</summary>
    public double DeviceToDevice(double bytes) => bytes <= 0 ? 0 : Crossings * (LatencyUs * 1e-6 + bytes / (PathGBs * 1e9));

    public string Describe() => string.Format(CultureInfo.InvariantCulture, "{0}: {1:G4} GB/s effective per direction, {2:G3} us per transfer, {3}{4}",
        Name, BandwidthGBs, LatencyUs, PeerToPeer ? "peer-to-peer" : "no peer-to-peer (device-to-device copies go through host memory: two crossings, time doubled)",
        HostBandwidthGBs is double h ? string.Format(CultureInfo.InvariantCulture, "; host link {0:G4} GB/s", h) : "");

    public void Validate()
    {
        if (!(BandwidthGBs > 0)) throw new ArgumentException($"--bandwidth-gbs must be positive, got {BandwidthGBs}.");
        if (HostBandwidthGBs is double h && !(h > 0)) throw new ArgumentException($"--host-bandwidth-gbs must be positive, got {h}.");
        if (!(LatencyUs >= 0)) throw new ArgumentException($"--latency-us must be non-negative, got {LatencyUs}.");
    }
}
