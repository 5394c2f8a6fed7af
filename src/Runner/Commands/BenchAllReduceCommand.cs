using System.CommandLine;
using Engine.Comm;
using Engine.Comm.Nccl;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Commands;

/// <summary>
/// <c>engine bench allreduce</c>: nccl-tests' figures (time, algbw, busbw) per size. Started by hand it
/// launches <c>--nproc</c> ranks of itself; as a rank (RANK set) it measures.
/// </summary>
internal static class BenchAllReduceCommand
{
    public static Command Create()
    {
        var backend = new Option<string>("--backend") { Description = "host (TCP ring) or nccl.", DefaultValueFactory = _ => "host" };
        var nproc = new Option<int?>("--nproc") { Description = "Ranks to launch on this machine, spread evenly over the emulated nodes if any. [default: 2, or one per node with --emulate-nodes]" };
        var sizes = new Option<string>("--sizes") { Description = "Message sizes, binary units (4K,1M,25M,85M).", DefaultValueFactory = _ => "1M,25M,85M" };
        var device = new Option<string>("--device") { Description = "Device of each rank; ranks share it. [default: cpu for host, cuda for nccl]" };
        var iters = new Option<int?>("--iters") { Description = "Timed all-reduces per size. [default: 3..20 by size]" };
        var timeout = new Option<double>("--timeout") { Description = "Seconds any wait may take.", DefaultValueFactory = _ => 300 };
        var emulateNodes = LaunchCommand.EmulateNodesOption();
        var link = LaunchCommand.LinkOption();
        var sliceKb = new Option<int>("--slice-kb") { Description = "Host ring pipelining slice, KiB.", DefaultValueFactory = _ => HostRingCommunicator.DefaultSliceBytes / 1024 };

        var command = new Command("allreduce", "All-reduce bandwidth per size (time, algbw, busbw = algbw x 2(n-1)/n), with the point-to-point socket ceiling for the host ring.")
        {
            backend, nproc, sizes, device, iters, timeout, sliceKb, emulateNodes, link,
        };
        command.SetAction(parse => CliErrors.Run(() =>
        {
            string b = parse.GetValue(backend)!;
            int nodes = parse.GetValue(emulateNodes);
            LinkRate? linkRate = LaunchCommand.ParseLink(parse.GetValue(link));
            int n = parse.GetValue(nproc) ?? (nodes > 0 ? nodes : 2);
            if (n < 1) throw new ArgumentException($"--nproc must be at least 1, got {n}.");
            if (nodes > 0 && n % nodes != 0) throw new ArgumentException($"--nproc {n} does not spread evenly over --emulate-nodes {nodes}: give a multiple of {nodes}.");
            double seconds = parse.GetValue(timeout);
            if (!double.IsFinite(seconds) || seconds <= 0) throw new ArgumentException($"--timeout must be a positive number of seconds, got {seconds}.");
            if (parse.GetValue(sliceKb) < 1) throw new ArgumentException($"--slice-kb must be at least 1, got {parse.GetValue(sliceKb)}.");
            if (parse.GetValue(iters) is < 1) throw new ArgumentException($"--iters must be at least 1, got {parse.GetValue(iters)}.");
            IReadOnlyList<long> sizeList = AllReduceBench.ParseSizes(parse.GetValue(sizes)!);
            string dev = parse.GetValue(device) ?? (b == "nccl" ? "cuda" : "cpu");
            var t = TimeSpan.FromSeconds(parse.GetValue(timeout));
            LaunchEnvironment env = LaunchEnvironment.FromEnvironment();

            if (env.WorldSize == 1) EmulatedCluster.CheckOptions(nodes, linkRate); // a rank is given --link alone, to report against it
            if (env.WorldSize == 1 && (n > 1 || nodes > 0))
            {
                // The parent: start n ranks of this same command; rank 0's table is the output.
                var args = new List<string> { "bench", "allreduce", "--backend", b, "--nproc", n.ToString(), "--sizes", parse.GetValue(sizes)!,
                    "--device", dev, "--timeout", parse.GetValue(timeout).ToString(System.Globalization.CultureInfo.InvariantCulture),
                    "--slice-kb", parse.GetValue(sliceKb).ToString() };
                if (parse.GetValue(iters) is int i)
                {
                    args.AddRange(["--iters", i.ToString()]);
                }
                if (linkRate is LinkRate r)
                {
                    args.AddRange(["--link", r.ToString()]); // the ranks report busbw against it
                }
                var launch = new LaunchOptions(nodes > 0 ? n / nodes : n, MasterPort: 0, OnlyRank0Stdout: true) { EmulatedNodes = nodes, Link = linkRate };
                using var signals = new StopSignals();
                return Launcher.Run(launch, ProcessTarget.CurrentProcess(), args, Console.Out, Console.Error, signals.Token, () => signals.Signal);
            }

            using Device d = Device.Create(dev);
            if (b == "nccl" && env.WorldSize == 1 && !NcclSelfCheck.Run(d, Console.Out, t))
            {
                return 1;
            }
            using ICommunicator comm = CommunicatorFactory.FromEnvironment(d, b, t, env, parse.GetValue(sliceKb) * 1024);
            if (comm.Rank == 0)
            {
                Console.WriteLine($"# {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.MachineName}, {Environment.ProcessorCount} logical CPUs, load average {LoadAverage()}");
            }
            AllReduceBench.Run(comm, d, sizeList, Console.Out, parse.GetValue(iters), linkRate);
            return 0;
        }));
        return command;
    }

    private static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "n/a";
        }
    }
}
