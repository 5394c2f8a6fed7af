using System.Globalization;

namespace Engine.Comm;

/// <summary>
/// A link's bandwidth in bits per second, written as tc writes rates: <c>1gbit</c>, <c>200mbit</c>,
/// <c>500kbit</c>, <c>64000bit</c> (decimal units, as network links are sold: 1mbit = 10^6 bit/s).
/// tc's byte units (<c>mbps</c> = megabytes per second) are refused rather than guessed.
/// </summary>
public readonly record struct LinkRate(long BitsPerSecond)
{
    /// <summary>
    /// What TCP can carry of a link's frame bytes: 1448 payload bytes (MSS with timestamps) per
    /// 1514-byte Ethernet frame, which is what tbf counts.
    /// </summary>
    public const double TcpPayloadFraction = 1448.0 / 1514;

    /// <summary>Bytes per second the link carries, headers included.</summary>
    public double BytesPerSecond => BitsPerSecond / 8.0;

    /// <summary>Payload bytes per second a TCP stream can get through the link.</summary>
    public double TcpBytesPerSecond => BytesPerSecond * TcpPayloadFraction;

    /// <summary>The rate as tc reads it (plain bits per second).</summary>
    public string TcRate => $"{BitsPerSecond.ToString(CultureInfo.InvariantCulture)}bit";

    public override string ToString() => BitsPerSecond switch
    {
        >= 1_000_000_000 when BitsPerSecond % 1_000_000_000 == 0 => $"{BitsPerSecond / 1_000_000_000}gbit",
        >= 1_000_000 when BitsPerSecond % 1_000_000 == 0 => $"{BitsPerSecond / 1_000_000}mbit",
        >= 1_000 when BitsPerSecond % 1_000 == 0 => $"{BitsPerSecond / 1_000}kbit",
        _ => $"{BitsPerSecond}bit",
    };

    /// <exception cref="ArgumentException">Not a rate in bit units, or not positive.</exception>
    public static LinkRate Parse(string text)
    {
        string s = text.Trim().ToLowerInvariant();
        (string Suffix, long Unit)[] units = [("gbit", 1_000_000_000), ("mbit", 1_000_000), ("kbit", 1_000), ("bit", 1)];
        foreach ((string suffix, long unit) in units)
        {
            if (s.EndsWith(suffix, StringComparison.Ordinal)
                && double.TryParse(s[..^suffix.Length], NumberStyles.Float, CultureInfo.InvariantCulture, out double v)
                && double.IsFinite(v) && v * unit >= 8_000 && v * unit <= 1e12)
            {
                return new LinkRate((long)Math.Round(v * unit));
            }
        }
        throw new ArgumentException($"--link '{text}': expected a rate in bits per second between 8kbit and 1000gbit, written as tc writes it (1gbit, 200mbit, 500kbit).");
    }
}
