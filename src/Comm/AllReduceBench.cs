using System.Diagnostics;
using System.Globalization;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Comm;

/// <summary>
/// nccl-tests' all-reduce figures for one communicator: per size, the mean time of an in-place
/// all-reduce, algbw = bytes / time and busbw = algbw x 2(n-1)/n (the bandwidth each link must carry,
/// comparable across rank counts). Each size is validated before it is timed. For the host ring the
/// one-way socket bandwidth between ranks 0 and 1, measured in the same run, is the ceiling.
/// </summary>
public static class AllReduceBench
{
    public sealed record Row(long Bytes, int Iterations, double Seconds, double AlgBw, double BusBw, double? PointToPoint);

    /// <summary>
    /// The least time the host ring's all-reduce of <paramref name="bytes"/> over <paramref name="ranks"/>
    /// ranks can take when they sit on two or more nodes joined by links of <paramref name="link"/>: the
    /// launcher places ranks node by node, so the ring leaves each node through exactly one hop, and that
    /// hop carries what every rank sends, 2(n-1)/n of the buffer; less the burst the link's shaper lets
    /// through at once after being idle. (busbw / link is the same ratio: floor / time.)
    /// </summary>
    public static double LinkFloorSeconds(long bytes, int ranks, LinkRate link)
    {
        double sent = ranks > 1 ? 2.0 * (ranks - 1) / ranks * bytes : 0;
        return Math.Max(0, sent - EmulatedCluster.BurstBytes(link)) / link.BytesPerSecond;
    }

    /// <summary>Parses "4K,1M,25M,85M" (binary units: K = 1024 bytes, M = 1024 K, G = 1024 M; a trailing B is allowed).</summary>
    public static IReadOnlyList<long> ParseSizes(string text)
    {
        var sizes = new List<long>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string s = part.ToUpperInvariant().TrimEnd('B');
            long unit = s.EndsWith('K') ? 1L << 10 : s.EndsWith('M') ? 1L << 20 : s.EndsWith('G') ? 1L << 30 : 1;
            string digits = unit == 1 ? s : s[..^1];
            if (!double.TryParse(digits, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || v < 0)
            {
                throw new ArgumentException($"--sizes: '{part}' is not a size (examples: 4K, 1M, 25M, 1G).");
            }
            sizes.Add((long)(v * unit) / sizeof(float) * sizeof(float));
        }
        return sizes;
    }

    /// <summary>Runs on every rank; rank 0 prints the table to <paramref name="output"/>.</summary>
    /// <param name="link">Emulated nodes' link rate: busbw is also given as a fraction of it.</param>
    public static IReadOnlyList<Row> Run(ICommunicator comm, Device dev, IReadOnlyList<long> sizes, TextWriter output, int? iterations = null, LinkRate? link = null)
    {
        int n = comm.WorldSize;
        double busFactor = n > 1 ? 2.0 * (n - 1) / n : 1.0;
        var host = comm as HostRingCommunicator;
        if (comm.Rank == 0)
        {
            output.WriteLine($"# all_reduce (in place, float32, avg): backend {comm.Backend}, {n} rank(s), device {dev}");
            output.WriteLine($"# busbw = algbw x 2(n-1)/n; p2p = one-way socket bandwidth rank 0 -> rank 1 in this run (the ring's ceiling)");
            if (link is LinkRate l)
            {
                output.WriteLine($"# link = {l} ({l.BytesPerSecond / 1e9:F4} GB/s, frame headers included: TCP over 1500-byte frames carries at most {LinkRate.TcpPayloadFraction:F3} of it); busbw/link = busbw / link");
            }
            output.WriteLine($"{"size",12} {"count",12} {"iters",6} {"time(ms)",10} {"algbw(GB/s)",12} {"busbw(GB/s)",12} {(host is null || n < 2 ? "" : "p2p(GB/s)"),10}{(link is null ? "" : $" {"busbw/link",10}")}");
        }
        var rows = new List<Row>();
        foreach (long bytes in sizes)
        {
            long count = bytes / sizeof(float);
            int iters = iterations ?? (int)Math.Clamp((256L << 20) / Math.Max(bytes, 1), 3, 20);
            using var buffer = dev.Allocate<float>(Math.Max(count, 1));
            ArrayView<float> view = buffer.View.SubView(0, count);
            Validate(comm, dev, view);

            comm.Barrier().Wait();
            var clock = Stopwatch.StartNew();
            var works = new List<CommWork>(iters);
            for (int i = 0; i < iters; i++)
            {
                works.Add(comm.AllReduce(view, ReduceOp.Avg)); // Avg keeps the values steady across iterations
            }
            CommWork.WaitAll(works);
            double seconds = clock.Elapsed.TotalSeconds / iters;

            // Report the mean over ranks, as every rank timed the same collectives.
            using (var timing = dev.Upload<float>([(float)seconds]))
            {
                comm.AllReduce(timing.View, ReduceOp.Avg).Wait();
                seconds = dev.Download<float>(timing.View)[0];
            }

            double? p2p = host is not null && n >= 2 ? host.PointToPointBandwidth(Math.Max(bytes, 4), Math.Max(3, iters / 2)) : null;
            double algbw = bytes / seconds;
            var row = new Row(bytes, iters, seconds, algbw, algbw * busFactor, p2p);
            rows.Add(row);
            if (comm.Rank == 0)
            {
                output.WriteLine($"{bytes,12} {count,12} {iters,6} {seconds * 1e3,10:F3} {algbw / 1e9,12:F3} {row.BusBw / 1e9,12:F3} {(p2p is double p ? (p / 1e9).ToString("F3", CultureInfo.InvariantCulture) : ""),10}{(link is LinkRate lr ? $" {row.BusBw / lr.BytesPerSecond,10:F3}" : "")}");
                output.Flush();
            }
        }
        return rows;
    }

    /// <summary>Rank r contributes r + 1 everywhere; after a sum every element must be n(n+1)/2.</summary>
    private static void Validate(ICommunicator comm, Device dev, ArrayView<float> view)
    {
        if (view.Length == 0)
        {
            return;
        }
        Engine.Kernels.Elementwise.Fill(dev, view, comm.Rank + 1);
        comm.AllReduce(view, ReduceOp.Sum).Wait();
        float expected = comm.WorldSize * (comm.WorldSize + 1) / 2f;
        float[] got = dev.Download(view);
        for (long i = 0; i < got.Length; i++)
        {
            if (got[i] != expected)
            {
                throw new InvalidOperationException($"all_reduce gave a wrong result on rank {comm.Rank}: element {i} of {got.Length} is {got[i]}, expected {expected}.");
            }
        }
    }
}
