using Engine.Comm;
using Engine.Nn;
using Engine.Runner.Training;

namespace Engine.Runner.Tests;

/// <summary>
/// DP and DDP have PyTorch's semantics: from the same initial weights and the same per-replica
/// samples they end with the same parameters; DDP ranks stay bit-identical; bucketing and overlap do
/// not change the result; DP keeps device 0's BN statistics; the breakdown adds up.
/// </summary>
[Collection("cpu-training")]
public class ParallelModesTests
{
    private const int PerDevice = 4, Replicas = 2, Steps = 3;

    private static TrainOptions Options(string mode) => TinyTraining.Options(TrainingMode.Parse(mode), PerDevice, Replicas, Steps, seed: 9);

    /// <summary>
    /// DP scatters contiguous chunks of the global batch (replica r gets samples [step*G + r*B, ...)),
    /// DistributedSampler deals round-robin. This order makes DDP rank r see exactly DP replica r's samples.
    /// </summary>
    private static int[] DdpOrderMatchingDp(int count)
    {
        var order = new int[count];
        int global = PerDevice * Replicas;
        for (int step = 0; step < count / global; step++)
            for (int r = 0; r < Replicas; r++)
                for (int j = 0; j < PerDevice; j++)
                    order[(step * PerDevice + j) * Replicas + r] = step * global + r * PerDevice + j;
        return order;
    }

    private static float[] RunDp(TrainOptions o, Action<DataParallelTrainer>? after = null)
    {
        using var t = new DataParallelTrainer(o, TextWriter.Null, TextWriter.Null);
        t.Run();
        after?.Invoke(t);
        return t.Model.Store.DownloadValues(t.Model.Device);
    }

    /// <summary>Runs DDP ranks as threads of this process over loopback TCP (the same code paths as separate processes).</summary>
    private static (float[][] Params, float[][] Buffers, RunResult Leader) RunDdp(TrainOptions o, Func<int, int, int[]>? order, Action<int, int, DistributedTrainer>? afterStep = null)
    {
        int port = Launcher.FreePort();
        var results = new float[Replicas][];
        var buffers = new float[Replicas][];
        RunResult? leader = null;
        var ranks = Enumerable.Range(0, Replicas).Select(rank => Task.Factory.StartNew(() =>
        {
            var env = LaunchEnvironment.FromVariables(LaunchEnvironment.ForChild(rank, Replicas, rank, Replicas, "127.0.0.1", port));
            using var t = new DistributedTrainer(o, TextWriter.Null, TextWriter.Null, env) { OrderOverride = order };
            if (afterStep is not null) t.AfterStep = (e, s) => afterStep(e, s, t);
            RunResult r = t.Run();
            if (rank == 0) leader = r;
            results[rank] = t.Model.Store.DownloadValues(t.Model.Device);
            buffers[rank] = t.Model.Store.DownloadBuffers(t.Model.Device);
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(ranks, TimeSpan.FromMinutes(10));
        return (results, buffers, leader!);
    }

    private static void AssertClose(float[] expected, float[] actual, double rtol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            Assert.True(Math.Abs(a - e) <= 1e-6 + rtol * Math.Abs(e), $"{what}[{i}]: {e:R} vs {a:R}");
        }
    }

    [Fact]
    public void Dp_and_ddp_end_with_the_same_parameters_and_ddp_ranks_stay_identical()
    {
        float[] dp = RunDp(Options("dp"));
        var ddpIdentical = new List<string>();
        var (ddp, _, _) = RunDdp(Options("ddp") with { VerifyReplicas = true }, (_, count) => DdpOrderMatchingDp(count));
        Assert.True(ddp[0].AsSpan().SequenceEqual(ddp[1]), "DDP ranks hold different parameters at the end");
        // fp32 sums in a different order (DP: g0 + g1 of 1/(2B)-scaled losses; DDP: (g0' + g1') / 2).
        AssertClose(dp, ddp[0], 1e-4, "dp vs ddp parameters");
        float[] initial;
        using (var fresh = new SingleTrainer(Options("single") with { Epochs = 1 }, TextWriter.Null, TextWriter.Null)) initial = fresh.Model.Store.DownloadValues(fresh.Model.Device);
        Assert.False(initial.AsSpan().SequenceEqual(dp), "training did not change the parameters");
    }

    [Fact]
    public void With_bn_in_eval_mode_dp_and_ddp_equal_single_device_training_with_the_global_batch()
    {
        TrainOptions Frozen(string mode) => Options(mode) with { BnMode = "eval" };
        float[] single;
        using (var t = new SingleTrainer(Frozen("single") with { BatchSize = PerDevice * Replicas }, TextWriter.Null, TextWriter.Null))
        {
            t.Run();
            single = t.Model.Store.DownloadValues(t.Model.Device);
        }
        float[] dp = RunDp(Frozen("dp"));
        var (ddp, _, _) = RunDdp(Frozen("ddp"), (_, count) => DdpOrderMatchingDp(count));
        AssertClose(single, dp, 1e-4, "single (batch 2B) vs dp (2 x B)");
        AssertClose(single, ddp[0], 1e-4, "single (batch 2B) vs ddp (2 ranks x B)");
    }

    [Fact]
    public void Bucket_size_and_overlap_do_not_change_ddp_results()
    {
        var (a, _, ra) = RunDdp(Options("ddp") with { BucketMb = 0.001 }, null);
        var (b, _, rb) = RunDdp(Options("ddp") with { BucketMb = 100, NoOverlap = true }, null);
        Assert.True(a[0].AsSpan().SequenceEqual(b[0]), "--bucket-mb / --no-overlap changed the parameters");
        Assert.True(ra.Breakdown!.GradSyncHiddenSecondsPerStep >= 0);
        Assert.Equal(0, rb.Breakdown!.GradSyncHiddenSecondsPerStep, 3);
    }

    [Fact]
    public void Dp_keeps_device_0s_bn_statistics()
    {
        float[]? master = null, replica1 = null;
        RunDp(Options("dp"), t =>
        {
            master = t.Replicas[0].Store.DownloadBuffers(t.Replicas[0].Device);
            replica1 = t.Replicas[1].Store.DownloadBuffers(t.Replicas[1].Device);
        });
        // DDP rank 0 computes its running statistics from the same samples as DP's device 0 and broadcasts them.
        var (_, ddpBuffers, _) = RunDdp(Options("ddp"), (_, count) => DdpOrderMatchingDp(count));
        AssertClose(ddpBuffers[0], master!, 1e-4, "dp running stats vs device 0's");
        Assert.False(master!.AsSpan().SequenceEqual(replica1), "replica 1 should hold statistics of its own chunk, not device 0's");
    }

    [Theory]
    [InlineData("single")]
    [InlineData("dp")]
    [InlineData("ddp")]
    public void Breakdown_adds_up_and_counts_the_bytes_each_algorithm_moves(string mode)
    {
        RunResult r;
        long parameters;
        if (mode == "ddp")
        {
            (_, _, r) = RunDdp(Options(mode), null);
        }
        else
        {
            using Trainer t = mode == "dp" ? new DataParallelTrainer(Options(mode), TextWriter.Null, TextWriter.Null) : new SingleTrainer(Options(mode), TextWriter.Null, TextWriter.Null);
            r = t.Run();
        }
        parameters = r.Parameters;
        Breakdown b = r.Breakdown!;
        Assert.Equal(mode, b.Mode);
        Assert.True(Math.Abs(b.PhaseSum - b.StepSeconds) <= 0.05 * b.StepSeconds, $"phases sum to {b.PhaseSum:F4} s, step is {b.StepSeconds:F4} s");
        Assert.True(b.Phases["forward"].SecondsPerStep > 0 && b.Phases["backward"].SecondsPerStep > 0);
        long image = 3 * 32 * 32;
        switch (mode)
        {
            case "dp":
                using (var model = new ResNet(Engine.Tests.TestDevice.Cpu, new ResNetConfig(18, "imagenet", 2)))
                {
                    long buffers = model.Store.BufferCount;
                    Assert.Equal((Replicas - 1) * (parameters + buffers) * 4, b.Phases["replicate"].BytesPerStep);
                }
                Assert.Equal((Replicas - 1) * parameters * 4, b.Phases["grad_sync"].BytesPerStep);
                Assert.Equal((Replicas - 1) * PerDevice * (image * 4 + 4 + 10 * 4), b.Phases["scatter"].BytesPerStep);
                Assert.Equal((Replicas - 1) * PerDevice * 10 * 4, b.Phases["gather"].BytesPerStep);
                break;
            case "ddp":
                Assert.Equal(2L * (Replicas - 1) * parameters * 4 / Replicas, b.Phases["grad_sync"].BytesPerStep);
                Assert.Equal(0, b.Phases["scatter"].BytesPerStep);
                break;
            default:
                Assert.Equal(0, b.Phases["grad_sync"].BytesPerStep);
                Assert.Equal(PerDevice * (image + 16), b.Phases["h2d"].BytesPerStep);
                break;
        }
    }
}
