using Engine.Kernels;
using Engine.Nn;
using Engine.Nn.Checkpoints;
using Engine.Runner.Training;

namespace Engine.Runner.Tests;

/// <summary>
/// ZeRO-1, ZeRO-2 and FSDP are DDP with the model state sharded: from the same data they end with DDP's parameters;
/// each rank holds the bytes the ZeRO paper's formulas give; gradient accumulation equals the larger batch; sharded
/// checkpoints are the full torchvision state_dict and resume on another world size.
/// </summary>
[Collection("cpu-training")]
public class ShardedModesTests
{
    private const int PerRank = 2, Steps = 3;

    // Several buckets (ZeRO's shards are per bucket) with a width-2 model.
    private static TrainOptions Options(TrainingMode mode, int ranks, int steps = Steps)
        => TinyTraining.Options(mode, PerRank, ranks, steps, seed: 5) with { BucketMb = 0.004 };

    /// <summary>
    /// Parameters equal DDP's within float32 rounding: every mode averages the same per-rank gradients, but a ring
    /// sums them in an order that depends on where the chunk boundaries fall, and the padding moves those. With two
    /// ranks a sum has one addition and the order cannot matter, so there the result must be identical to the bit.
    /// </summary>
    [Theory]
    [InlineData("zero1")]
    [InlineData("zero2")]
    [InlineData("fsdp")]
    public void Sharded_mode_ends_with_ddps_parameters(string name)
    {
        TrainingMode mode = TrainingMode.Parse(name);
        TrainOptions ddpOptions = Options(TrainingMode.Ddp, 2) with { VerifyReplicas = true };
        TrainOptions options = Options(mode, 2) with { VerifyReplicas = true };
        RankOutcome[] ddp = RankThreads.Run(ddpOptions, 2);
        RankOutcome[] sharded = RankThreads.Run(options, 2);
        float[] expected = RankThreads.Unpadded(ddp[0].Parameters, ddpOptions, 2);
        float[] actual = RankThreads.Unpadded(sharded[0].Parameters, options, 2);
        Assert.Equal(expected.Length, actual.Length);
        int differ = Enumerable.Range(0, expected.Length).Count(i => expected[i] != actual[i]);
        Assert.True(differ == 0, $"{name}: {differ} of {expected.Length} parameters differ from DDP's after {Steps} steps with two ranks");
        Assert.True(sharded[1].Parameters.AsSpan().SequenceEqual(sharded[0].Parameters), $"{name}: rank 1's gathered parameters differ from rank 0's");
        float[] initial;
        using (var fresh = new SingleTrainer(Options(TrainingMode.Single, 2), TextWriter.Null, TextWriter.Null)) initial = fresh.Model.Store.DownloadValues(fresh.Model.Device);
        Assert.False(initial.AsSpan().SequenceEqual(expected), "training did not change the parameters");
    }

    /// <summary>
    /// With four ranks the ring's summation order differs between layouts, so gradients differ in their last bits.
    /// BN is frozen here: batch statistics over two samples per rank would amplify those bits step after step. Then
    /// FSDP's parameters are DDP's within float32 rounding (relative 1e-5).
    /// </summary>
    [Fact]
    public void Fsdp_with_four_ranks_ends_within_rounding_of_ddp()
    {
        TrainOptions ddpOptions = Options(TrainingMode.Ddp, 4, steps: 2) with { BnMode = "eval" }, options = ddpOptions with { Mode = TrainingMode.Fsdp };
        float[] expected = RankThreads.Unpadded(RankThreads.Run(ddpOptions, 4)[0].Parameters, ddpOptions, 4);
        float[] actual = RankThreads.Unpadded(RankThreads.Run(options, 4)[0].Parameters, options, 4);
        double worst = Enumerable.Range(0, expected.Length).Max(i => Math.Abs(actual[i] - expected[i]) / (1e-3 + Math.Abs(expected[i])));
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-6 + 1e-5 * Math.Abs(expected[i]), $"parameter {i}: ddp {expected[i]:R}, fsdp {actual[i]:R} (worst relative difference {worst:E2})");
        }
    }

    /// <summary>
    /// Bytes of model state per rank against the ZeRO paper's formulas for SGD with momentum in fp32 (Psi parameters,
    /// N ranks): DDP 12 Psi, ZeRO-1 8 Psi + 4 Psi/N, ZeRO-2 4 Psi + 8 Psi/N, FSDP 12 Psi/N. The stated overhead: the
    /// BN running statistics (buffers, replicated in every mode, counted with the parameters) and each segment's
    /// padding to a multiple of N (at most N-1 elements per segment, in each of the three).
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Memory_per_rank_matches_the_zero_formulas(int ranks)
    {
        var formulas = new (TrainingMode Mode, double Parameters, double Gradients, double Optimizer)[]
        {
            (TrainingMode.Ddp, 4, 4, 4),
            (TrainingMode.Zero1, 4, 4, 4.0 / ranks),
            (TrainingMode.Zero2, 4, 4.0 / ranks, 4.0 / ranks),
            (TrainingMode.Fsdp, 4.0 / ranks, 4.0 / ranks, 4.0 / ranks),
        };
        foreach (var (mode, perParameter, perGradient, perMomentum) in formulas)
        {
            TrainOptions o = Options(mode, ranks, steps: 1);
            RankOutcome[] outcome = RankThreads.Run(o, ranks);
            IReadOnlyList<RankMemory> memory = outcome[0].Result.Memory!;
            Assert.Equal(ranks, memory.Count);
            using var device = Device.Create("cpu");
            using var model = new ResNet(device, ResNetConfig.Parse(o.Model, o.Stem, o.Width));
            long psi = model.Store.ParameterCount, buffers = model.Store.BufferCount;
            int segments = RankThreads.PaddedLayout(o, ranks).Count; // an upper bound on the segment count
            long padding = 4L * segments * (ranks - 1);
            foreach (RankMemory m in memory)
            {
                void Check(string what, long measured, double expected, long overhead)
                {
                    Assert.True(measured >= expected - 4 * segments && measured <= expected + overhead,
                        $"{mode} rank {m.Rank} of {ranks}: {what} {measured} bytes, formula {expected:F0} (+ up to {overhead} overhead)");
                }
                Check("parameters", m.Parameters, perParameter * psi + 4 * buffers, padding);
                Check("gradients", m.Gradients, perGradient * psi, padding);
                Check("optimizer state", m.OptimizerState, perMomentum * psi, padding);
                Assert.True(m.Peak >= m.Parameters + m.Gradients + m.OptimizerState, $"{mode}: peak {m.Peak} below the model state");
                if (mode == TrainingMode.Ddp) Assert.Equal(0, m.Communication);
                if (mode == TrainingMode.Fsdp) Assert.True(m.Communication > 0, "FSDP gathers units into communication buffers");
            }
        }
    }

    /// <summary>With BN frozen, N micro-batches of b with --accumulate N are one step of batch N*b, for one device and for DDP (no_sync).</summary>
    [Fact]
    public void Accumulating_micro_batches_equals_the_larger_batch()
    {
        TrainOptions Frozen(TrainingMode mode, int batch, int accumulate) => Options(mode, 2) with { BnMode = "eval", BatchSize = batch, Accumulate = accumulate };
        float[] Single(TrainOptions o)
        {
            using var t = new SingleTrainer(o, TextWriter.Null, TextWriter.Null);
            t.Run();
            return t.Model.Store.DownloadValues(t.Model.Device);
        }
        float[] whole = Single(Frozen(TrainingMode.Single, 2 * PerRank, 1));
        float[] micro = Single(Frozen(TrainingMode.Single, PerRank, 2));
        AssertClose(whole, micro, "single, batch 2b vs 2 micro-batches of b");
        TrainOptions bigDdp = Frozen(TrainingMode.Ddp, 2 * PerRank, 1), microDdp = Frozen(TrainingMode.Ddp, PerRank, 2);
        float[] ddpWhole = RankThreads.Run(bigDdp, 2)[0].Parameters;
        RankOutcome[] ddpMicro = RankThreads.Run(microDdp, 2);
        AssertClose(ddpWhole, ddpMicro[0].Parameters, "ddp, batch 2b vs 2 micro-batches of b");
        // no_sync: the gradient all-reduce runs once per optimizer step, not once per micro-batch.
        Breakdown b = ddpMicro[0].Result.Breakdown!;
        Assert.Equal(b.Phases["grad_sync"].BytesPerStep, RankThreads.Run(bigDdp, 2)[0].Result.Breakdown!.Phases["grad_sync"].BytesPerStep);
    }

    private static void AssertClose(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-6 + 1e-4 * Math.Abs(expected[i]), $"{what}: [{i}] {expected[i]:R} vs {actual[i]:R}");
        }
    }

    /// <summary>
    /// A sharded checkpoint is the full torchvision state_dict (the names and shapes of a DDP checkpoint, DDP's values)
    /// with the full momentum; resuming it on four ranks gives every rank exactly its shard of that momentum.
    /// </summary>
    [Theory]
    [InlineData("zero2")]
    [InlineData("fsdp")]
    public void Sharded_checkpoint_is_the_full_state_dict_and_resumes_on_another_world_size(string name)
    {
        TrainingMode mode = TrainingMode.Parse(name);
        string dir = Directory.CreateTempSubdirectory("engine-sharded-ckpt").FullName;
        try
        {
            string ddpPath = Path.Combine(dir, "ddp.safetensors"), zeroPath = Path.Combine(dir, "zero.safetensors");
            RankThreads.Run(Options(TrainingMode.Ddp, 2) with { Save = ddpPath }, 2);
            RankThreads.Run(Options(mode, 2) with { Save = zeroPath }, 2);
            var (ddpTensors, _) = SafeTensors.Read(ddpPath);
            var (zeroTensors, _) = SafeTensors.Read(zeroPath);
            Assert.Equal(ddpTensors.Keys.OrderBy(k => k), zeroTensors.Keys.OrderBy(k => k));
            foreach (var (entry, t) in ddpTensors)
            {
                Assert.Equal(t.Shape, zeroTensors[entry].Shape);
                Assert.True(t.Data.AsSpan().SequenceEqual(zeroTensors[entry].Data), $"{entry}: the {name} checkpoint differs from DDP's");
            }
            var (ddpState, _) = SafeTensors.Read(ModelCheckpoint.StatePath(ddpPath));
            var (zeroState, _) = SafeTensors.Read(ModelCheckpoint.StatePath(zeroPath));
            foreach (var (entry, t) in ddpState)
            {
                Assert.True(t.ToFloats().SequenceEqual(zeroState[entry].ToFloats()), $"{entry}: the {name} checkpoint's momentum differs from DDP's");
            }

            // Resume on four ranks (no further epochs): the momentum each rank gathers back is the file's.
            float[]? resumed = null;
            RankThreads.Run(Options(mode, 4) with { Resume = zeroPath, Epochs = 1 }, 4, afterRun: t =>
            {
                float[] m = t.Strategy.Optimizer.DownloadMomentum();
                if (t.Rank == 0) resumed = m;
            });
            var layout = RankThreads.PaddedLayout(Options(mode, 4), 4);
            foreach (var (entry, offset, length) in layout)
            {
                float[] file = zeroState["momentum." + entry].ToFloats();
                Assert.True(resumed!.AsSpan((int)offset, (int)length).SequenceEqual(file), $"momentum.{entry} after resuming {name} on 4 ranks differs from the file");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
