using System.Globalization;
using Engine.Comm;

namespace Engine.Runner.Scaling;

/// <summary>
/// The link between devices: effective bandwidth per direction, latency per transfer, and whether
/// devices copy to each other directly (peer-to-peer) or through host memory. Without peer-to-peer a
/// device-to-device copy is a copy up to the host and a second copy down: this model charges both
/// crossings one after the other (the time doubles), as a staged copy without pipelining would.
/// Host-to-device copies use the host link (<see cref="HostGBs"/>: PCIe, even when the devices share NVLink).
/// </summary>
/// <param name="BurstBytes">What the link lets through at once after it was idle (a token-bucket shaper's bucket, in payload bytes); 0: none.</param>
public sealed record Link(string Name, double BandwidthGBs, double LatencyUs, bool PeerToPeer, double? HostBandwidthGBs = null, double BurstBytes = 0)
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

    /// <summary>The preset the model assumes when no link is given.</summary>
    public const string DefaultPreset = "pcie4";

    /// <summary>
    /// <c>--link</c> as the model uses it: a preset's name is the devices' link, which DDP's ranks use
    /// too; a rate as tc writes it (<c>8mbit</c>, <c>1gbit</c>) is the network between the emulated
    /// nodes DDP's ranks ran on, while DP's copies (inside one process) stay on <see cref="DefaultPreset"/>.
    /// </summary>
    public static (Link Devices, Link? Network) Resolve(string name)
    {
        if (Presets.TryGetValue(name.ToLowerInvariant(), out Link? l)) return (l, null);
        LinkRate rate;
        try
        {
            rate = LinkRate.Parse(name);
        }
        catch (ArgumentException)
        {
            throw new ArgumentException($"--link must be one of {string.Join(", ", Presets.Keys)} or a rate such as 8mbit or 1gbit (the link between emulated nodes), got '{name}'.");
        }
        return (Presets[DefaultPreset], Emulated(rate));
    }

    /// <summary>
    /// The link between emulated nodes (<c>--emulate-nodes N --link R</c>): what TCP carries of R
    /// (<see cref="LinkRate.TcpPayloadFraction"/>), no latency (tbf adds none), one crossing per
    /// transfer, and tbf's burst (<see cref="EmulatedCluster.BurstBytes"/>) after the link was idle.
    /// </summary>
    public static Link Emulated(LinkRate rate) => new($"emulated link {rate} (tbf)", rate.TcpBytesPerSecond / 1e9, 0, true,
        BurstBytes: EmulatedCluster.BurstBytes(rate) * LinkRate.TcpPayloadFraction);

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

    public string Describe() => string.Format(CultureInfo.InvariantCulture, "{0}: {1:G4} GB/s effective per direction, {2:G3} us per transfer, {3}{4}{5}",
        Name, BandwidthGBs, LatencyUs, PeerToPeer ? "peer-to-peer" : "no peer-to-peer (device-to-device copies go through host memory: two crossings, time doubled)",
        HostBandwidthGBs is double h ? string.Format(CultureInfo.InvariantCulture, "; host link {0:G4} GB/s", h) : "",
        BurstBytes > 0 ? string.Format(CultureInfo.InvariantCulture, "; the first {0:F1} KB after an idle spell pass at once (the shaper's bucket)", BurstBytes / 1e3) : "");

    public void Validate()
    {
        if (!(BandwidthGBs > 0)) throw new ArgumentException($"--bandwidth-gbs must be positive, got {BandwidthGBs}.");
        if (HostBandwidthGBs is double h && !(h > 0)) throw new ArgumentException($"--host-bandwidth-gbs must be positive, got {h}.");
        if (!(LatencyUs >= 0)) throw new ArgumentException($"--latency-us must be non-negative, got {LatencyUs}.");
        if (!(BurstBytes >= 0)) throw new ArgumentException($"a link's burst must be non-negative, got {BurstBytes} bytes.");
    }
}
