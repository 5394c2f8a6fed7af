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
/// </summary>
public static class RankWorker
{
    public static int Main(string[] args)
    {
        try
        {
            return args[0] switch
            {
                "collectives" => Collectives(int.Parse(args[1]), int.Parse(args[2]), double.Parse(args[3])),
                "kill" => KillDuringAllReduce(int.Parse(args[1]), double.Parse(args[2])),
                "stall" => StallDuringAllReduce(int.Parse(args[1]), double.Parse(args[2])),
                "env" => PrintEnvironment(),
                "exit" => ExitOrSleep(int.Parse(args[1]), int.Parse(args[2])),
                _ => throw new ArgumentException($"unknown scenario {args[0]}"),
            };
        }
        catch (CommException e)
        {
            Console.Error.WriteLine($"ERROR {e.GetType().Name} op={e.Operation} peer={e.PeerRank} lost={e.LostRank}: {e.Message}");
            return 3;
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

    private static int Collectives(int seed, int sliceBytes, double timeoutSeconds)
    {
        using Device dev = Device.Create("cpu");
        using ICommunicator comm = CommunicatorFactory.FromEnvironment(dev, "host", TimeSpan.FromSeconds(timeoutSeconds), sliceBytes: sliceBytes);
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
            using (var output = dev.Allocate<float>((long)n * L))
            {
                Elementwise.Fill(dev, output.View, float.NaN);
                comm.AllGather(input.View, output.View).Wait();
                Check("all_gather", L, i => Input(seed, 5 + L, (int)(i / L), i % L), dev.Download<float>(output.View));
            }

            foreach (ReduceOp op in new[] { ReduceOp.Sum, ReduceOp.Avg })
            {
                using var input = Make(6 + L, r, (long)n * L);
                using var output = dev.Allocate<float>(L);
                Elementwise.Fill(dev, output.View, float.NaN);
                comm.ReduceScatter(input.View, output.View, op).Wait();
                Check($"reduce_scatter_{op}", L, i => SumOver(6 + L, r * (long)L + i) / (op == ReduceOp.Avg ? n : 1), dev.Download<float>(output.View));
            }
        }

        comm.Barrier().Wait();
        Console.WriteLine(failures == 0 ? "OK" : $"FAILED {failures}");
        return failures == 0 ? 0 : 1;
    }

    /// <summary>All-reduces of 8 MB in a loop; rank <paramref name="victim"/> kills itself (SIGKILL) in the middle of one.</summary>
    private static int KillDuringAllReduce(int victim, double timeoutSeconds)
    {
        using Device dev = Device.Create("cpu");
        using ICommunicator comm = CommunicatorFactory.FromEnvironment(dev, "host", TimeSpan.FromSeconds(timeoutSeconds));
        using var buffer = dev.Allocate<float>(2 << 20);
        Elementwise.Fill(dev, buffer.View, 1f);
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
    private static int StallDuringAllReduce(int victim, double timeoutSeconds)
    {
        using Device dev = Device.Create("cpu");
        using ICommunicator comm = CommunicatorFactory.FromEnvironment(dev, "host", TimeSpan.FromSeconds(timeoutSeconds));
        using var buffer = dev.Allocate<float>(1 << 16);
        Elementwise.Fill(dev, buffer.View, 1f);
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
