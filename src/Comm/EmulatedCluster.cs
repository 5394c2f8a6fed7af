using System.Diagnostics;
using System.Globalization;

namespace Engine.Comm;

/// <summary>
/// A cluster of <see cref="Nodes"/> hosts on one Linux machine: each node is a network namespace whose
/// only interface (besides its own loopback) is <c>eth0</c>, one end of a veth pair whose other end is
/// a port of a bridge in a further "switch" namespace. Each link is shaped to <see cref="Rate"/> in both
/// directions by a token-bucket filter (tbf) on both ends: the node's end limits what it sends, the
/// switch's end what it receives, as a switch port does. Only bandwidth is shaped: tbf adds no
/// latency, and netem (which would) is not available on every kernel, so none is added.
///
/// Nothing is created in the machine's own network namespace: the subnet <see cref="Subnet"/> exists
/// only on the node ends of these links, the nodes have no default route, and the switch has no
/// uplink, so no packet can leave the namespaces of the run. Deleting the namespaces deletes their
/// interfaces, the bridge and the qdiscs with them; <see cref="Dispose"/> does that, and
/// <see cref="RemoveStale"/> removes the sets of runs whose owner process is gone (names carry its pid).
/// </summary>
public sealed class EmulatedCluster : IDisposable
{
    /// <summary>Every namespace the engine makes starts with this: <c>engine-net-{pid}-{k}-switch</c>, <c>...-node{i}</c>.</summary>
    public const string NamePrefix = "engine-net-";

    /// <summary>The nodes' subnet; node i is 10.250.0.(i+1).</summary>
    public const string Subnet = "10.250.0.0/24";

    public const int MaxNodes = 64;

    private static int _created;
    private readonly List<string> _namespaces = new();
    private bool _disposed;

    public int Nodes { get; }
    public LinkRate Rate { get; }

    /// <summary>This set's names start with it (<c>engine-net-{pid}-{k}-</c>).</summary>
    public string Prefix { get; }

    public string SwitchNamespace => Prefix + "switch";

    private EmulatedCluster(int nodes, LinkRate rate, string prefix)
    {
        Nodes = nodes;
        Rate = rate;
        Prefix = prefix;
    }

    public string NodeNamespace(int node) => $"{Prefix}node{node}";

    public static string NodeAddress(int node) => $"10.250.0.{node + 1}";

    /// <summary>What runs a program inside node <paramref name="node"/>'s namespace (ip execs it: same pid).</summary>
    public IReadOnlyList<string> ExecPrefix(int node) => [Tools.Ip, "netns", "exec", NodeNamespace(node)];

    /// <summary>
    /// tbf's bucket: what a link lets through at once after it was idle. At least 64 KiB (one GSO
    /// packet must fit) and about 2 ms of the rate, so that the shaper's timer never starves the link.
    /// A transfer of b bytes over the link takes at least (b - burst) / rate.
    /// </summary>
    public static long BurstBytes(LinkRate rate) => Math.Max(64 * 1024, (long)(rate.BytesPerSecond * 0.002));

    /// <summary>
    /// Removes stale sets, then builds a fresh one. On any failure what was built is removed again.
    /// </summary>
    /// <exception cref="EmulationException">Not root, iproute2 missing, or a command failed (its message says which and why).</exception>
    public static EmulatedCluster Create(int nodes, LinkRate rate, TextWriter log)
    {
        if (nodes < 1 || nodes > MaxNodes)
        {
            throw new ArgumentException($"--emulate-nodes {nodes}: must be in 1..{MaxNodes}.");
        }
        Tools.Require();
        RemoveStale(log);
        int k = Interlocked.Increment(ref _created) - 1;
        var cluster = new EmulatedCluster(nodes, rate, $"{NamePrefix}{Environment.ProcessId}-{k}-");
        try
        {
            cluster.Build();
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
        return cluster;
    }

    private void Build()
    {
        string sw = SwitchNamespace;
        AddNamespace(sw);
        Tools.Run(Tools.Ip, "-n", sw, "link", "add", "br0", "type", "bridge");
        Tools.Run(Tools.Ip, "-n", sw, "link", "set", "br0", "up");
        string burst = BurstBytes(Rate).ToString(CultureInfo.InvariantCulture);
        for (int i = 0; i < Nodes; i++)
        {
            string node = NodeNamespace(i);
            string port = $"n{i}";
            AddNamespace(node);
            Tools.Run(Tools.Ip, "-n", node, "link", "set", "lo", "up");
            Tools.Run(Tools.Ip, "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", node);
            Tools.Run(Tools.Ip, "-n", sw, "link", "set", port, "master", "br0", "up");
            Tools.Run(Tools.Ip, "-n", node, "addr", "add", $"{NodeAddress(i)}/24", "dev", "eth0");
            Tools.Run(Tools.Ip, "-n", node, "link", "set", "eth0", "up");
            // Both ends: the node's eth0 shapes what the node sends, the switch port what it receives.
            Tools.Run(Tools.Tc, "-n", node, "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", Rate.TcRate, "burst", burst, "latency", "100ms");
            Tools.Run(Tools.Tc, "-n", sw, "qdisc", "add", "dev", port, "root", "tbf", "rate", Rate.TcRate, "burst", burst, "latency", "100ms");
        }
    }

    private void AddNamespace(string name)
    {
        Tools.Run(Tools.Ip, "netns", "add", name);
        _namespaces.Add(name);
    }

    /// <summary>--emulate-nodes and --link as every command takes them: both or neither, nodes in 0..<see cref="MaxNodes"/> (0: none).</summary>
    /// <exception cref="ArgumentException">They do not go together.</exception>
    public static void CheckOptions(int nodes, LinkRate? link)
    {
        if (nodes < 0 || nodes > MaxNodes)
        {
            throw new ArgumentException($"--emulate-nodes {nodes}: must be in 0..{MaxNodes} (0: no emulation).");
        }
        if (nodes > 0 && link is null)
        {
            throw new ArgumentException("--emulate-nodes needs --link RATE (for example 1gbit or 200mbit): the bandwidth of each node's link.");
        }
        if (nodes == 0 && link is not null)
        {
            throw new ArgumentException("--link shapes the links of emulated nodes: give --emulate-nodes N with it.");
        }
    }

    /// <summary>Why emulated nodes cannot be made on this machine (not Linux, no iproute2, not root), or null when they can.</summary>
    public static string? Unavailable() => Tools.Unavailable();

    /// <summary>One line for the launcher's log: what was built.</summary>
    public string Describe() =>
        $"{Nodes} node(s) in network namespaces {NodeNamespace(0)}..{Nodes - 1} at {NodeAddress(0)}..{NodeAddress(Nodes - 1)} ({Subnet}, reachable only " +
        $"from each other), each joined to a bridge by a link shaped to {Rate} each way (tbf; bandwidth only, no latency added)";

    /// <summary>The engine's namespaces that exist now (names starting with <see cref="NamePrefix"/>).</summary>
    public static IReadOnlyList<string> ExistingNamespaces()
    {
        string output = Tools.Run(Tools.Ip, "netns", "list");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split(' ')[0])
            .Where(name => name.StartsWith(NamePrefix, StringComparison.Ordinal))
            .ToList();
    }

    /// <summary>
    /// Deletes every engine namespace whose owner (the pid in its name) is no longer running: what a
    /// launcher killed with SIGKILL, or a crashed machine's run, left behind. Returns the names deleted.
    /// </summary>
    public static IReadOnlyList<string> RemoveStale(TextWriter log)
    {
        Tools.Require();
        var removed = new List<string>();
        foreach (string name in ExistingNamespaces())
        {
            if (OwnerPid(name) is int pid && ProcessGroups.IsAlive(pid))
            {
                continue;
            }
            Tools.Run(Tools.Ip, "netns", "delete", name);
            removed.Add(name);
        }
        if (removed.Count > 0)
        {
            log.WriteLine($"launch: removed {removed.Count} network namespace(s) left by an earlier run that did not clean up: {string.Join(", ", removed)}.");
        }
        return removed;
    }

    /// <summary>The pid in <c>engine-net-{pid}-...</c>, or null when the name has none.</summary>
    public static int? OwnerPid(string name)
    {
        if (!name.StartsWith(NamePrefix, StringComparison.Ordinal)) return null;
        string rest = name[NamePrefix.Length..];
        int dash = rest.IndexOf('-');
        return dash > 0 && int.TryParse(rest[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ? pid : null;
    }

    /// <summary>Deletes the namespaces (with them every veth, the bridge and every qdisc). Ranks must have exited.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        var failures = new List<string>();
        // Nodes first: deleting a node's namespace destroys its veth, whose switch end goes with it.
        for (int i = _namespaces.Count - 1; i >= 0; i--)
        {
            try
            {
                Tools.Run(Tools.Ip, "netns", "delete", _namespaces[i]);
            }
            catch (EmulationException e)
            {
                failures.Add(e.Message);
            }
        }
        _namespaces.Clear();
        if (failures.Count > 0)
        {
            throw new EmulationException($"could not remove every emulated node: {string.Join("; ", failures)}");
        }
    }

    /// <summary>iproute2's programs, found once, and running them.</summary>
    internal static class Tools
    {
        private static readonly string[] Folders = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

        public static string Ip { get; } = Find("ip");
        public static string Tc { get; } = Find("tc");

        private static string Find(string name) => Folders.Select(f => Path.Combine(f, name)).FirstOrDefault(File.Exists) ?? name;

        /// <summary>Why emulated nodes cannot be made here, or null when they can.</summary>
        public static string? Unavailable()
        {
            if (!OperatingSystem.IsLinux()) return "emulated nodes need Linux network namespaces";
            if (!File.Exists(Ip) || !File.Exists(Tc)) return "emulated nodes need iproute2's ip and tc (apt-get install iproute2)";
            if (!IsRoot()) return "emulated nodes need root (network namespaces, veth links and tc qdiscs); run as root";
            return null;
        }

        private static bool IsRoot()
        {
            try
            {
                // The effective uid, fourth field set of "Uid:" in /proc/self/status: real, effective, saved, fs.
                string? line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("Uid:", StringComparison.Ordinal));
                return line is not null && line.Split('\t', StringSplitOptions.RemoveEmptyEntries)[2] == "0";
            }
            catch (IOException)
            {
                return false;
            }
        }

        public static void Require()
        {
            if (Unavailable() is string why) throw new EmulationException(why + ".");
        }

        /// <summary>Runs a command, returns its stdout; a non-zero exit throws with the command and its stderr in one line.</summary>
        public static string Run(string file, params string[] args)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (string a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi) ?? throw new EmulationException($"could not start {file}.");
            Task<string> stderr = p.StandardError.ReadToEndAsync();
            string stdout = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(TimeSpan.FromSeconds(30)))
            {
                p.Kill();
                throw new EmulationException($"'{Path.GetFileName(file)} {string.Join(' ', args)}' did not finish within 30 s.");
            }
            if (p.ExitCode != 0)
            {
                string why = stderr.Result.ReplaceLineEndings(" ").Trim();
                throw new EmulationException($"'{Path.GetFileName(file)} {string.Join(' ', args)}' failed (exit {p.ExitCode}): {why}");
            }
            return stdout;
        }
    }
}
