using System.Diagnostics;
using System.Security.Cryptography;
using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Comm.Tests;

/// <summary>
/// The program each rank runs in the multi-process tests (<c>dotnet Engine.Comm.Tests.dll SCENARIO ...</c>),
/// started by <see cref="Launcher"/> or directly with torchrun's variables. It checks every collective
/// against a float64 reference computed from all ranks' (deterministic) inputs, prints a hash of each
/// result so the test can check that ranks agree bit for bit, and exits non-zero on any mismatch.
/// The collective scenarios take an optional backend and device (default <c>host</c> on <c>cpu</c>); with
/// <c>nccl</c> on <c>cuda</c> they run on the simulated GPU with the fake NCCL of native/ (see <see cref="FakeNccl"/>).
/// </summary>
public static class RankWorker
{
    public static int Main(string[] args)
    {
        string Arg(int i, string fallback) => args.Length > i ? args[i] : fallback;
        try
        {
            return args[0] switch
            {
                "collectives" => Collectives(int.Parse(args[1]), int.Parse(args[2]), double.Parse(args[3]), Arg(4, "host"), Arg(5, "cpu")),
                "kill" => KillDuringAllReduce(int.Parse(args[1]), double.Parse(args[2]), Arg(3, "host"), Arg(4, "cpu")),
                "stall" => StallDuringAllReduce(int.Parse(args[1]), double.Parse(args[2]), Arg(3, "host"), Arg(4, "cpu")),
                "nccl-init-hang" => NcclInitThatHangs(double.Parse(args[1])),
                "env" => PrintEnvironment(),
                "exit" => ExitOrSleep(int.Parse(args[1]), int.Parse(args[2])),
                _ => throw new ArgumentException($"unknown scenario {args[0]}"),
            };
        }
        catch (CommException e)
        {
            Console.Error.WriteLine($"ERROR {e.GetType().Name} op={e.Operation} peer={e.PeerRank} lost={e.LostRank}: {e.Message}");
            PrintFakeNcclState();
            return 3;
        }
    }

    /// <summary>
    /// The rank's device. On the simulated GPU the process first moves to a folder holding the simulator's
    /// configuration; the simulator prints on stdout, so the worker's own lines go to stderr (the launcher
    /// prefixes both).
    /// </summary>
    private static Device OpenDevice(string spec)
    {
        if (spec != "cpu" && Engine.Tests.SimulatedGpu.IsSetUp)
        {
            Console.SetOut(Console.Error);
            Engine.Tests.SimulatedGpu.EnterWorkingFolder();
        }
        return Device.Create(spec);
    }

    /// <summary>A buffer of <paramref name="length"/> copies of <paramref name="value"/>, uploaded (no kernel: cheap on the simulated GPU).</summary>
    private static MemoryBuffer1D<float, Stride1D.Dense> Filled(Device dev, long length, float value)
    {
        var host = new float[length];
        Array.Fill(host, value);
        return dev.Upload<float>(host);
    }

    /// <summary>The fake NCCL's counters, printed for the tests (nothing when the loaded NCCL is not the fake).</summary>
    private static void PrintFakeNcclState()
    {
        if (FakeNccl.Stats() is { } s)
        {
            Console.WriteLine($"FAKE_NCCL inits_in_flight={s.InitsInFlight} aborts={s.Aborts} live={s.Live}");
        }
    }

    /// <summary>Rank r's input element i for a collective identified by <paramref name="tag"/>: small integers and halves, so sums are exact in float.</summary>
    public static float Input(int seed, int tag, int rank, long i)
    {
        ulong h = (ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)tag * 0xC2B2AE3D27D4EB4FUL ^ (ulong)rank * 0x165667B19E3779F9UL ^ (ulong)i * 0x27D4EB2F165667C5UL;
        h ^= h >> 29;
        h *= 0xBF58476D1CE4E5B9UL;
        h ^= h >> 32;
        return (float)((long)(h % 2001) - 1000) / 8f + 0.25f * (float)((h >> 20) % 7) / 7f;
    }

    private static readonly int[] Lengths = [0, 1, 2, 3, 5, 7, 13, 31, 97, 257, 1031, 4099, 65_537];

    private static int Collectives(int seed, int sliceBytes, double timeoutSeconds, string backend, string device)
    {
        int failures;
        using (Device dev = OpenDevice(device))
        using (ICommunicator comm = CommunicatorFactory.FromEnvironment(dev, backend, TimeSpan.FromSeconds(timeoutSeconds), sliceBytes: sliceBytes))
        {
            failures = Collectives(dev, comm, seed);
        }
        PrintFakeNcclState();
        Console.WriteLine(failures == 0 ? "OK" : $"FAILED {failures}");
        return failures == 0 ? 0 : 1;
    }

    private static int Collectives(Device dev, ICommunicator comm, int seed)
    {
        int n = comm.WorldSize, r = comm.Rank;
        int failures = 0;

        void Check(string what, int length, Func<long, double> expected, float[] actual)
        {
            Console.WriteLine($"HASH {what} {length} {Convert.ToHexString(SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(actual.AsSpan())))}");
            for (long i = 0; i < actual.Length; i++)
            {
                double e = expected(i), a = actual[i];
                // Inputs are at most 126 in magnitude, so a float32 sum over n ranks is within n ulps of 126 of the exact one.
                if (double.IsNaN(a) || Math.Abs(a - e) > n * 126.0 * Math.Pow(2, -23) * 2)
                {
                    Console.Error.WriteLine($"FAIL {what} length {length} rank {r}: [{i}] expected {e:R} got {a:R} (seed {seed})");
                    failures++;
                    return;
                }
            }
        }

        double SumOver(int tag, long i) { double s = 0; for (int q = 0; q < n; q++) s += Input(seed, tag, q, i); return s; }
        MemoryBuffer1D<float, Stride1D.Dense> Make(int tag, int rank, long length)
        {
            var host = new float[length];
            for (long i = 0; i < length; i++) host[i] = Input(seed, tag, rank, i);
            return dev.Upload<float>(host);
        }

        // All-reduces for every length are issued before any is waited on: the queue must keep them in order.
        var sums = new List<(int L, MemoryBuffer1D<float, Stride1D.Dense> B, CommWork W)>();
        var avgs = new List<(int L, MemoryBuffer1D<float, Stride1D.Dense> B, CommWork W)>();
        foreach (int L in Lengths)
        {
            var s = Make(1 + L, r, L);
            sums.Add((L, s, comm.AllReduce(s.View, ReduceOp.Sum)));
            var a = Make(2 + L, r, L);
            avgs.Add((L, a, comm.AllReduce(a.View, ReduceOp.Avg)));
        }
        foreach (var (L, B, W) in sums)
        {
            W.Wait();
            Check("all_reduce_sum", L, i => SumOver(1 + L, i), dev.Download<float>(B.View));
            B.Dispose();
        }
        foreach (var (L, B, W) in avgs)
        {
            W.Wait();
            Check("all_reduce_avg", L, i => SumOver(2 + L, i) / n, dev.Download<float>(B.View));
            B.Dispose();
        }

        // 16-bit all-reduce (DDP's compression hooks): every rank the same bits, each element within n + 1 roundings
        // (the inputs' and each addition's) of the exact sum of the 16-bit inputs.
        foreach (Engine.Kernels.Float16Format format in new[] { Engine.Kernels.Float16Format.Fp16, Engine.Kernels.Float16Format.Bf16 })
        {
            double u = format == Engine.Kernels.Float16Format.Fp16 ? Math.Pow(2, -11) : Math.Pow(2, -8);
            foreach (int L in Lengths)
            {
                int even = L + (L & 1), tag = 40 + L + (int)format;
                ushort Encoded(int rank, long i) => Engine.Kernels.Float16.Encode(Input(seed, tag, rank, i), format);
                var host = new ushort[even];
                for (long i = 0; i < L; i++) host[i] = Encoded(r, i);
                using var b = dev.Upload<ushort>(host);
                comm.AllReduce16(b.View, format).Wait();
                ushort[] got = dev.Download<ushort>(b.View);
                string what = $"all_reduce16_{format.ToString().ToLowerInvariant()}";
                Console.WriteLine($"HASH {what} {L} {Convert.ToHexString(SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(got.AsSpan())))}");
                for (long i = 0; i < L; i++)
                {
                    double exact = 0, size = 0;
                    for (int q = 0; q < n; q++)
                    {
                        double x = Engine.Kernels.Float16.Decode(Encoded(q, i), format);
                        exact += x;
                        size += Math.Abs(x);
                    }
                    double a = Engine.Kernels.Float16.Decode(got[i], format);
                    if (double.IsNaN(a) || Math.Abs(a - exact) > (n + 1) * u * size)
                    {
                        Console.Error.WriteLine($"FAIL {what} length {L} rank {r}: [{i}] expected {exact:R} got {a:R} (seed {seed})");
                        failures++;
                        break;
                    }
                }
            }
        }

        foreach (int L in Lengths)
        {
            int root = L % n;
            using (var b = Make(3 + L, r, L))
            {
                comm.Broadcast(b.View, root).Wait();
                Check("broadcast", L, i => Input(seed, 3 + L, root, i), dev.Download<float>(b.View));
            }

            int reduceRoot = (L + 1) % n;
            using (var b = Make(4 + L, r, L))
            {
                comm.Reduce(b.View, reduceRoot).Wait();
                float[] got = dev.Download<float>(b.View);
                if (r == reduceRoot)
                {
                    Check("reduce", L, i => SumOver(4 + L, i), got);
                }
                else
                {
                    Check($"reduce_nonroot{r}", L, i => Input(seed, 4 + L, r, i), got);
                }
            }

            using (var input = Make(5 + L, r, L))
            using (var output = Filled(dev, (long)n * L, float.NaN))
            {
                comm.AllGather(input.View, output.View).Wait();
                Check("all_gather", L, i => Input(seed, 5 + L, (int)(i / L), i % L), dev.Download<float>(output.View));
            }

            foreach (ReduceOp op in new[] { ReduceOp.Sum, ReduceOp.Avg })
            {
                using var input = Make(6 + L, r, (long)n * L);
                using var output = Filled(dev, L, float.NaN);
                comm.ReduceScatter(input.View, output.View, op).Wait();
                Check($"reduce_scatter_{op}", L, i => SumOver(6 + L, r * (long)L + i) / (op == ReduceOp.Avg ? n : 1), dev.Download<float>(output.View));
            }
        }

        // Views with offsets into larger buffers (NCCL gets the view's address, not the buffer's), out of place and
        // in place; the elements around each view must keep their sentinel.
        const int pad = 5;
        const float sentinel = -12345.5f;
        MemoryBuffer1D<float, Stride1D.Dense> Padded(int tag, int rank, long length, bool input)
        {
            var host = new float[length + 2 * pad];
            Array.Fill(host, sentinel);
            for (long i = 0; input && i < length; i++) host[pad + i] = Input(seed, tag, rank, i);
            if (!input) Array.Fill(host, float.NaN, pad, (int)length);
            return dev.Upload<float>(host);
        }
        ArrayView<float> Inner(MemoryBuffer1D<float, Stride1D.Dense> b) => b.View.SubView(pad, b.Length - 2 * pad);
        void CheckPadded(string what, int length, Func<long, double> expected, MemoryBuffer1D<float, Stride1D.Dense> b)
        {
            float[] all = dev.Download<float>(b.View);
            Check(what, length, expected, all[pad..^pad]);
            if (all[..pad].Concat(all[^pad..]).Any(v => v != sentinel))
            {
                Console.Error.WriteLine($"FAIL {what} length {length} rank {r}: wrote outside the view (seed {seed})");
                failures++;
            }
        }
        foreach (int L in new[] { 1, 31, 4099 })
        {
            using (var input = Padded(7 + L, r, L, true))
            using (var output = Padded(0, r, L, false))
            {
                if (comm is Engine.Comm.Nccl.NcclCommunicator nccl)
                {
                    // Out of place (NCCL's sendbuff != recvbuff): only NCCL offers it.
                    nccl.AllReduce(Inner(input), Inner(output)).Wait();
                    CheckPadded("offset_all_reduce_out_of_place", L, i => SumOver(7 + L, i), output);
                    CheckPadded($"offset_all_reduce_input{r}", L, i => Input(seed, 7 + L, r, i), input);
                }
                comm.AllReduce(Inner(input), ReduceOp.Avg).Wait();
                CheckPadded("offset_all_reduce_in_place", L, i => SumOver(7 + L, i) / n, input);
            }
            using (var b = Padded(8 + L, r, L, true))
            {
                comm.Broadcast(Inner(b), n - 1).Wait();
                CheckPadded("offset_broadcast", L, i => Input(seed, 8 + L, n - 1, i), b);
            }
            using (var input = Padded(9 + L, r, L, true))
            using (var output = Padded(0, r, (long)n * L, false))
            {
                comm.AllGather(Inner(input), Inner(output)).Wait();
                CheckPadded("offset_all_gather", L, i => Input(seed, 9 + L, (int)(i / L), i % L), output);
            }
            using (var input = Padded(10 + L, r, (long)n * L, true))
            using (var output = Padded(0, r, L, false))
            {
                comm.ReduceScatter(Inner(input), Inner(output)).Wait();
                CheckPadded("offset_reduce_scatter", L, i => SumOver(10 + L, r * (long)L + i), output);
            }
        }

        comm.Barrier().Wait();
        return failures;
    }

    /// <summary>All-reduces of 8 MB in a loop; rank <paramref name="victim"/> kills itself (SIGKILL) in the middle of one.</summary>
    private static int KillDuringAllReduce(int victim, double timeoutSeconds, string backend, string device)
    {
        using Device dev = OpenDevice(device);
        using ICommunicator comm = CommunicatorFactory.FromEnvironment(dev, backend, TimeSpan.FromSeconds(timeoutSeconds));
        using var buffer = Filled(dev, 2 << 20, 1f);
        for (int it = 0; it < 1000; it++)
        {
            CommWork w = comm.AllReduce(buffer.View, ReduceOp.Avg);
            if (comm.Rank == victim && it == 2)
            {
                Thread.Sleep(5);
                Console.WriteLine("KILLING");
                Console.Out.Flush();
                Process.GetCurrentProcess().Kill();
            }
            w.Wait();
        }
        Console.WriteLine("NO ERROR");
        return 0;
    }

    /// <summary>Rank <paramref name="victim"/> stops taking part (but stays alive): the others must time out naming it.</summary>
    private static int StallDuringAllReduce(int victim, double timeoutSeconds, string backend, string device)
    {
        using Device dev = OpenDevice(device);
        using ICommunicator comm = CommunicatorFactory.FromEnvironment(dev, backend, TimeSpan.FromSeconds(timeoutSeconds));
        using var buffer = Filled(dev, 1 << 16, 1f);
        comm.AllReduce(buffer.View).Wait();
        if (comm.Rank == victim)
        {
            Console.WriteLine("STALLING");
            Console.Out.Flush();
            Thread.Sleep(TimeSpan.FromSeconds(60));
            return 0;
        }
        var clock = Stopwatch.StartNew();
        try
        {
            comm.AllReduce(buffer.View).Wait();
        }
        catch (CommException e)
        {
            Console.Error.WriteLine($"ERROR after {clock.Elapsed.TotalSeconds:F1} s lost={e.LostRank} peer={e.PeerRank}: {e.Message}");
            return 3;
        }
        Console.WriteLine("NO ERROR");
        return 0;
    }

    /// <summary>
    /// One NCCL rank whose init never completes (the fake NCCL with FAKE_NCCL_INIT=hang): creating the communicator
    /// must fail at the timeout, and leave no init running inside NCCL (it was aborted).
    /// </summary>
    private static int NcclInitThatHangs(double timeoutSeconds)
    {
        using Device dev = OpenDevice("cuda");
        var clock = Stopwatch.StartNew();
        try
        {
            using ICommunicator comm = CommunicatorFactory.FromEnvironment(dev, "nccl", TimeSpan.FromSeconds(timeoutSeconds), LaunchEnvironment.Single);
            Console.WriteLine("NO ERROR");
        }
        catch (CommTimeoutException e)
        {
            Console.WriteLine($"TIMEOUT after {clock.Elapsed.TotalSeconds:F1} s: {e.Message}");
        }
        PrintFakeNcclState();
        return 0;
    }

    private static int PrintEnvironment()
    {
        LaunchEnvironment env = LaunchEnvironment.FromEnvironment();
        Console.WriteLine($"ENV {env.Rank} {env.WorldSize} {env.LocalRank} {env.LocalWorldSize} {env.MasterAddr} {env.MasterPort}");
        return 0;
    }

    /// <summary>Rank <paramref name="failing"/> exits with <paramref name="code"/> at once; the others sleep a minute.</summary>
    private static int ExitOrSleep(int failing, int code)
    {
        if (LaunchEnvironment.FromEnvironment().Rank == failing)
        {
            Thread.Sleep(300);
            return code;
        }
        Console.WriteLine("SLEEPING");
        Thread.Sleep(TimeSpan.FromSeconds(60));
        return 0;
    }
}
