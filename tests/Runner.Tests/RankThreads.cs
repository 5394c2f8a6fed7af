using Engine.Comm;
using Engine.Runner.Training;

namespace Engine.Runner.Tests;

/// <summary>What one rank of an in-process multi-process-mode run left behind.</summary>
internal sealed record RankOutcome(float[] Parameters, float[] Buffers, RunResult Result);

/// <summary>
/// Runs the ranks of a multi-process mode (ddp, zero1, zero2, fsdp) as threads of this process over loopback TCP:
/// the same code paths as separate processes, without starting any. Parameters are downloaded in full (gathered
/// where the mode shards them).
/// </summary>
internal static class RankThreads
{
    public static RankOutcome[] Run(TrainOptions o, int ranks, Func<int, int, int[]>? order = null, Action<int, int, DistributedTrainer>? afterStep = null,
        Action<DistributedTrainer>? afterRun = null)
    {
        int port = Launcher.FreePort();
        var outcomes = new RankOutcome[ranks];
        var threads = Enumerable.Range(0, ranks).Select(rank => Task.Factory.StartNew(() =>
        {
            var env = LaunchEnvironment.FromVariables(LaunchEnvironment.ForChild(rank, ranks, rank, ranks, "127.0.0.1", port));
            using var t = new DistributedTrainer(o, TextWriter.Null, TextWriter.Null, env) { OrderOverride = order };
            if (afterStep is not null) t.AfterStep = (e, s) => afterStep(e, s, t);
            RunResult r = t.Run();
            afterRun?.Invoke(t);
            float[] parameters;
            using (t.Strategy.GatherFullParameters(writeBack: false)) parameters = t.Model.Store.DownloadValues(t.Model.Device);
            outcomes[rank] = new RankOutcome(parameters, t.Model.Store.DownloadBuffers(t.Model.Device), r);
        }, TaskCreationOptions.LongRunning)).ToArray();
        if (!Task.WaitAll(threads, TimeSpan.FromMinutes(10))) throw new TimeoutException($"{o.Mode} with {ranks} ranks did not finish in 10 minutes.");
        return outcomes;
    }

    /// <summary>The parameters of every entry, in state_dict order, without a sharded layout's padding (layouts of different modes compare equal).</summary>
    public static float[] Unpadded(float[] flat, TrainOptions o, int ranks)
        => PaddedLayout(o, ranks).SelectMany(p => flat.AsSpan((int)p.Offset, (int)p.Length).ToArray()).ToArray();

    /// <summary>(name, offset, length) of every parameter in the flat layout <paramref name="o"/>'s mode uses with <paramref name="ranks"/> ranks, in state_dict order.</summary>
    public static IReadOnlyList<(string Name, long Offset, long Length)> PaddedLayout(TrainOptions o, int ranks)
    {
        using var device = Engine.Kernels.Device.Create("cpu");
        Engine.Nn.Parallel.DistributedStrategy? strategy = o.Mode.MultiProcess ? o.Mode.CreateStrategy(new LayoutOnly(ranks), device, new Engine.Nn.Parallel.DistributedSettings(o.BucketMb)) : null;
        using var model = new Engine.Nn.ResNet(device, Engine.Nn.ResNetConfig.Parse(o.Model, o.Stem, o.Width), strategy is null ? null : strategy.Layout);
        return model.Store.Parameters.Select(p => (p.Name, p.Offset, p.Length)).ToList();
    }

    /// <summary>A communicator that only answers its world size: enough for a strategy to lay out a store.</summary>
    private sealed class LayoutOnly(int ranks) : ICommunicator
    {
        public int Rank => 0;
        public int WorldSize => ranks;
        public string Backend => "none";
        public TimeSpan Timeout { get; set; }
        public CommWork AllReduce(ILGPU.ArrayView<float> buffer, ReduceOp op = ReduceOp.Sum) => throw new NotSupportedException();
        public CommWork Broadcast(ILGPU.ArrayView<float> buffer, int root) => throw new NotSupportedException();
        public CommWork AllReduce16(ILGPU.ArrayView<ushort> buffer, Engine.Kernels.Float16Format format) => throw new NotSupportedException();
        public CommWork Reduce(ILGPU.ArrayView<float> buffer, int root, ReduceOp op = ReduceOp.Sum) => throw new NotSupportedException();
        public CommWork AllGather(ILGPU.ArrayView<float> input, ILGPU.ArrayView<float> output) => throw new NotSupportedException();
        public CommWork ReduceScatter(ILGPU.ArrayView<float> input, ILGPU.ArrayView<float> output, ReduceOp op = ReduceOp.Sum) => throw new NotSupportedException();
        public CommWork Barrier() => throw new NotSupportedException();
        public void Dispose()
        {
        }
    }
}

/// <summary>The training runs the parallel-mode tests make: a width-2 ResNet-18 on synthetic images, one epoch, no evaluation, fixed order.</summary>
internal static class TinyTraining
{
    /// <param name="batch">Per device or rank.</param>
    /// <param name="replicas">Devices (dp) or ranks; <paramref name="steps"/> optimizer steps each.</param>
    public static TrainOptions Options(TrainingMode mode, int batch, int replicas, int steps, int seed) => new()
    {
        Mode = mode,
        Device = "cpu",
        Devices = mode == TrainingMode.Dp ? string.Join(',', Enumerable.Repeat("cpu", replicas)) : null,
        Model = "resnet18",
        Stem = "imagenet",
        Width = 2,
        Dataset = "synthetic",
        TrainLimit = batch * replicas * steps,
        TestLimit = 0,
        Epochs = 1,
        BatchSize = batch,
        Augment = "none",
        Shuffle = false,
        Seed = seed,
        Timeout = 60,
    };
}
