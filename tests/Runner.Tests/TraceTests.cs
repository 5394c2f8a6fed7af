using System.Text.Json;
using Engine.Comm;
using Engine.Runner.Training;

namespace Engine.Runner.Tests;

/// <summary>--trace writes valid Chrome-trace JSON whose slices show what each mode does, and DDP's all-reduce overlapping backward only when overlap is on.</summary>
[Collection("cpu-training")]
public class TraceTests
{
    private static TrainOptions Options(string mode, string trace) => new()
    {
        Mode = TrainingMode.Parse(mode),
        Device = "cpu",
        Devices = mode == "dp" ? "cpu,cpu" : null,
        Model = "resnet18",
        Width = 2,
        TrainLimit = 16,
        TestLimit = 0,
        Epochs = 1,
        BatchSize = 4,
        Augment = "none",
        Trace = trace,
        BucketMb = 0.002,
        Timeout = 60,
    };

    private sealed record Slice(string Name, int Pid, string Track, double Start, double End);

    private static List<Slice> Read(string path)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
        var events = doc.RootElement.GetProperty("traceEvents").EnumerateArray().ToList();
        var names = events.Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "thread_name")
            .ToDictionary(e => (e.GetProperty("pid").GetInt32(), e.GetProperty("tid").GetInt32()), e => e.GetProperty("args").GetProperty("name").GetString()!);
        return events.Where(e => e.GetProperty("ph").GetString() == "X").Select(e =>
        {
            int pid = e.GetProperty("pid").GetInt32(), tid = e.GetProperty("tid").GetInt32();
            double ts = e.GetProperty("ts").GetDouble();
            return new Slice(e.GetProperty("name").GetString()!, pid, names[(pid, tid)], ts, ts + e.GetProperty("dur").GetDouble());
        }).ToList();
    }

    private static void RunDdp(TrainOptions o)
    {
        int port = Launcher.FreePort();
        var ranks = Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            var env = LaunchEnvironment.FromVariables(LaunchEnvironment.ForChild(rank, 2, rank, 2, "127.0.0.1", port));
            using var t = new DistributedTrainer(o, TextWriter.Null, TextWriter.Null, env);
            t.Run();
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(ranks, TimeSpan.FromMinutes(10));
    }

    [Fact]
    public void Dp_trace_shows_scatter_replicate_gather_on_device_0_and_work_on_every_device()
    {
        string path = Path.Combine(Path.GetTempPath(), $"engine-dp-{Guid.NewGuid():N}.json");
        try
        {
            using (var t = new DataParallelTrainer(Options("dp", path) with { Profile = "kernels" }, TextWriter.Null, TextWriter.Null)) t.Run();
            var slices = Read(path);
            foreach (string phase in new[] { "scatter", "replicate", "forward", "gather", "loss", "backward", "grad_sync", "optimizer" })
            {
                Assert.Contains(slices, s => s.Name == phase && s.Track.StartsWith("device 0", StringComparison.Ordinal));
            }
            Assert.Contains(slices, s => s.Name == "forward replica 1" && s.Track == "device 1");
            Assert.Contains(slices, s => s.Name == "backward replica 0" && s.Track == "device 0");
            // With --profile kernels, every launch is a slice on its device's kernel track, inside the run's steps.
            var kernels = slices.Where(s => s.Name.StartsWith("Kernel_", StringComparison.Ordinal)).ToList();
            Assert.Contains(kernels, s => s.Name == "Kernel_conv2d_fwd" && s.Track == "device 0 kernels (cpu)");
            Assert.Contains(kernels, s => s.Name == "Kernel_conv2d_bwd_weight" && s.Track == "device 1 kernels (cpu)");
            double first = slices.Where(s => s.Name == "data").Min(s => s.Start), last = slices.Where(s => s.Name == "optimizer").Max(s => s.End);
            Assert.All(kernels, k => Assert.InRange(k.Start, first - 1000, last + 1000));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Ddp_trace_has_a_track_per_rank_and_all_reduce_overlaps_backward_only_with_overlap(bool noOverlap)
    {
        string path = Path.Combine(Path.GetTempPath(), $"engine-ddp-{Guid.NewGuid():N}.json");
        try
        {
            RunDdp(Options("ddp", path) with { NoOverlap = noOverlap });
            Assert.False(File.Exists(path + ".rank1"), "the rank parts were not merged away");
            var slices = Read(path);
            Assert.Equal(new[] { 0, 1 }, slices.Select(s => s.Pid).Distinct().OrderBy(p => p));
            var backward = slices.Where(s => s.Pid == 0 && s.Name == "backward").OrderBy(s => s.Start).ToList();
            var buckets = slices.Where(s => s.Pid == 0 && s.Name.StartsWith("all_reduce bucket", StringComparison.Ordinal)).ToList();
            Assert.NotEmpty(backward);
            Assert.True(buckets.Count > backward.Count, "expected several buckets per step with a tiny --bucket-mb");
            Assert.All(buckets, b => Assert.Equal("rank 0 collectives", b.Track));
            int overlapping = buckets.Count(b => backward.Any(k => b.Start < k.End - 1 && b.End > k.Start));
            if (noOverlap)
            {
                Assert.True(overlapping == 0, $"{overlapping} all-reduce slices overlap backward with --no-overlap");
            }
            else
            {
                Assert.True(overlapping > 0, "no all-reduce slice overlaps backward with overlap on");
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
