using Engine.Comm;
using Engine.Kernels;
using Engine.Nn;
using Engine.Runner.Data;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>
/// The multi-process modes (DDP, ZeRO-1, ZeRO-2, FSDP): one process per replica, started by <c>engine launch</c>
/// (or any launcher that sets torchrun's variables), each driving its mode's <see cref="DistributedStrategy"/>.
/// Rank 0 broadcasts parameters and buffers at start and buffers before each forward (broadcast_buffers=True);
/// what happens to gradients and parameters after backward is the strategy's. Each epoch's permutation is split
/// round-robin into disjoint rank shards, like DistributedSampler(drop_last=True). Only rank 0 prints and writes files.
/// </summary>
public sealed class DistributedTrainer : Trainer
{
    private readonly LaunchEnvironment _env;
    private readonly Device _device;
    private readonly ICommunicator _comm;
    private readonly ResNet _model;
    private readonly DistributedStrategy _strategy;
    private readonly CrossEntropyLoss _loss;
    private readonly BatchSource _batches;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _scalars, _hashes;
    private readonly bool _shared;

    public DistributedTrainer(TrainOptions options, TextWriter stdout, TextWriter progress)
        : this(options, stdout, progress, LaunchEnvironment.FromEnvironment())
    {
    }

    public DistributedTrainer(TrainOptions options, TextWriter stdout, TextWriter progress, LaunchEnvironment env)
        : base(options, stdout, progress, isLeader: env.Rank == 0)
    {
        _env = env;
        int shard = TrainData.Count / env.WorldSize;
        CheckBatchFits(shard, $"per rank, of a {shard}-image shard");
        string spec = RankDevice(options.Device, env);
        _device = Device.Create(spec);
        try
        {
            _shared = _device.IsCpu || (env.LocalWorldSize > 1 && !spec.StartsWith("cuda:", StringComparison.Ordinal)) || SharesGpu(spec, env);
            _comm = CommunicatorFactory.FromEnvironment(_device, options.Backend, TimeSpan.FromSeconds(options.Timeout), env);
            if (IsLeader)
            {
                Progress.WriteLine($"{Mode}: {env.WorldSize} rank(s), backend {_comm.Backend}, device {_device}{(_shared ? " (ranks share a physical device)" : "")}, " +
                    $"gradients {(options.NoOverlap ? "after backward" : "overlapping backward")}");
            }
            _strategy = Mode.CreateStrategy(_comm, _device, new DistributedSettings(options.BucketMb, !options.NoOverlap, options.Lr, options.Momentum, options.WeightDecay, options.Compression));
            _strategy.CommTrack = $"rank {env.Rank} collectives";
            _model = new ResNet(_device, Config, _strategy.Layout);
            _strategy.Attach(_model);
            _loss = new CrossEntropyLoss(_device);
            _batches = new BatchSource(_device, TrainData, options.BatchSize);
            _scalars = _device.Allocate<float>(3);
            _hashes = _device.Allocate<float>(8L * env.WorldSize);
            using (_strategy.GatherFullParameters(writeBack: true)) InitialiseModel();
            // DDP's constructor: every rank starts from rank 0's parameters and buffers.
            _strategy.BroadcastInitialState();
            if (IsLeader)
            {
                Progress.WriteLine($"{Mode}: {_model.Store.Segments.Count} {(Mode == TrainingMode.Fsdp ? "unit" : "gradient bucket")}(s): " +
                    string.Join(", ", _model.Store.Segments.Select(b => Compare.Comparison.Bytes(b.PaddedLength * sizeof(float)))));
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>cuda / auto on a machine with several GPUs: rank LOCAL_RANK takes cuda:LOCAL_RANK (mod the count).</summary>
    private static string RankDevice(string spec, LaunchEnvironment env)
    {
        if (spec is not ("auto" or "cuda")) return spec;
        using var context = Device.CreateContext();
        int gpus = Device.CudaCount(context);
        if (gpus == 0) return spec == "cuda" ? "cuda:0" : "cpu";
        return $"cuda:{env.LocalRank % gpus}";
    }

    private static bool SharesGpu(string spec, LaunchEnvironment env) => env.LocalWorldSize > 1 && spec.StartsWith("cuda:", StringComparison.Ordinal) && !spec.EndsWith($":{env.LocalRank}", StringComparison.Ordinal);

    public override ResNet Model => _model;
    protected override IOptimizer Optimizer => _strategy.Optimizer;
    protected override IReadOnlyList<Device> Devices => new[] { _device };
    public override bool Shared => _shared;
    public int Rank => _env.Rank;
    public DistributedStrategy Strategy => _strategy;
    protected override int GlobalBatch => O.BatchSize * O.Accumulate;
    protected override int PerStepIndices => O.BatchSize * O.Accumulate;
    protected override int StepsPerEpoch => TrainData.Count / _env.WorldSize / PerStepIndices;
    protected override int[] EpochIndices(int[] order) => EpochOrder.Shard(order, _env.Rank, _env.WorldSize);

    /// <summary>
    /// Fault injection for the failure tests: ENGINE_FAULT_KILL="RANK:STEP" makes that rank kill itself
    /// abruptly (SIGKILL, no clean-up) at that step of the first epoch, as a crashed GPU process would die.
    /// </summary>
    private void MaybeDie(int epoch, int step)
    {
        if (epoch != StartEpoch || Environment.GetEnvironmentVariable("ENGINE_FAULT_KILL") is not string spec) return;
        string[] parts = spec.Split(':');
        if (parts.Length == 2 && int.TryParse(parts[0], out int rank) && int.TryParse(parts[1], out int at) && rank == _env.Rank && at == step)
        {
            System.Diagnostics.Process.GetCurrentProcess().Kill();
        }
    }

    protected override StepOutcome Step(int epoch, int step, ReadOnlySpan<int> indices, PhaseClock clock)
    {
        MaybeDie(epoch, step);
        int b = O.BatchSize, micro = O.Accumulate;
        var outcome = new StepOutcome(0, 0, 0);
        for (int m = 0; m < micro; m++)
        {
            var (x, labels) = _batches.Load(indices.Slice(m * b, b), O.Augment == "standard", Rng.For(O.Seed, epoch, step * micro + m, _env.Rank), clock);
            // broadcast_buffers=True: rank 0's BN running statistics before every forward.
            using (clock.Phase("replicate", _env.WorldSize > 1 ? _model.Store.BufferCount * sizeof(float) : 0))
            {
                if (_env.WorldSize > 1) _comm.Broadcast(_model.Store.BufferValues.SubView(0, _model.Store.BufferCount), 0).Wait();
            }
            Tensor logits;
            using (clock.Phase("forward")) logits = _model.Forward(x, training: true);
            _strategy.AfterForward(clock);
            Tensor dlogits;
            using (clock.Phase("loss"))
            {
                _loss.Forward(logits, labels);
                dlogits = _loss.Backward(1f / (b * micro));
            }
            _strategy.Backward(dlogits, clock, sync: m == micro - 1);
            var (loss, correct) = _loss.Read();
            outcome = new StepOutcome(outcome.LossSum + (double)loss * b, outcome.Correct + correct, outcome.Samples + b);
        }
        _strategy.Step(clock);
        if (O.VerifyReplicas) VerifyReplicas(epoch, step);
        return outcome;
    }

    protected override int TraceProcessId => _env.Rank;
    protected override string KernelTrackPrefix => $"rank {_env.Rank} ";
    protected override string TraceProcessName => $"ddp rank {_env.Rank}";
    protected override string TraceTrack => $"rank {_env.Rank} {_device.Spec}";

    /// <summary>Every rank writes its part; after a barrier rank 0 merges them into one file and removes the parts.</summary>
    protected override void WriteTrace(TraceRecorder trace, string path)
    {
        string Part(int r) => $"{path}.rank{r}";
        trace.Write(Part(_env.Rank));
        if (_env.WorldSize > 1) _comm.Barrier().Wait();
        if (!IsLeader) return;
        var parts = Enumerable.Range(0, _env.WorldSize).Select(Part).ToList();
        TraceRecorder.Merge(parts, path);
        foreach (string p in parts) File.Delete(p);
        Progress.WriteLine($"trace: {path} ({_env.WorldSize} ranks merged; open in Perfetto or chrome://tracing)");
    }

    /// <summary>Every rank hashes its parameters (gathered in full where they are sharded); the hashes are gathered and must all be equal.</summary>
    private void VerifyReplicas(int epoch, int step)
    {
        float[] values;
        using (_strategy.GatherFullParameters(writeBack: false)) values = _model.Store.DownloadValues(_device);
        ulong h = 14695981039346656037UL;
        foreach (float v in values)
        {
            h = (h ^ BitConverter.SingleToUInt32Bits(v)) * 1099511628211UL;
        }
        // Four 16-bit pieces, each exact in a float.
        float[] mine = { h & 0xFFFF, (h >> 16) & 0xFFFF, (h >> 32) & 0xFFFF, h >> 48 };
        using var input = _device.Upload<float>(mine);
        ArrayView<float> all = ((ArrayView<float>)_hashes.View).SubView(0, 4L * _env.WorldSize);
        _comm.AllGather(input.View, all).Wait();
        float[] gathered = _device.Download(all);
        for (int r = 1; r < _env.WorldSize; r++)
        {
            if (!gathered.AsSpan(4 * r, 4).SequenceEqual(gathered.AsSpan(0, 4)))
            {
                throw new InvalidOperationException($"DDP replicas diverged at epoch {epoch + 1}, step {step + 1}: rank {r}'s parameters differ from rank 0's.");
            }
        }
    }

    protected override StepOutcome ReduceEpoch(StepOutcome local)
    {
        if (_env.WorldSize == 1) return local;
        ArrayView<float> s = ((ArrayView<float>)_scalars.View).SubView(0, 3);
        s.CopyFromCPU(_device.Stream, new[] { (float)local.LossSum, local.Correct, local.Samples });
        _comm.AllReduce(s, ReduceOp.Sum).Wait();
        float[] sum = _device.Download(s);
        return new StepOutcome(sum[0], (long)Math.Round(sum[1]), (int)Math.Round(sum[2]));
    }

    /// <summary>Rank 0 evaluates the whole test set; the others wait for it at a barrier.</summary>
    protected override int GradientBuckets => _model.Store.Segments.Count;

    protected override double? Evaluate()
    {
        using var full = _strategy.GatherFullParameters(writeBack: false);
        double? accuracy = IsLeader ? EvaluateOn(_device, _model, _loss) : null;
        if (_env.WorldSize > 1) _comm.Barrier().Wait();
        return accuracy;
    }

    /// <summary>Sharded state is gathered on every rank (a collective); rank 0 writes the full torchvision state_dict.</summary>
    protected override void SaveCheckpoint(int epochsDone)
    {
        using var full = _strategy.GatherFullParameters(writeBack: false);
        float[] momentum = Optimizer.DownloadMomentum();
        if (IsLeader) WriteCheckpoint(epochsDone, momentum);
        if (_env.WorldSize > 1) _comm.Barrier().Wait();
    }

    /// <summary>Every rank's memory by use, all-gathered (each byte count as two exact 24-bit halves in floats).</summary>
    protected override IReadOnlyList<RankMemory> GatherMemory()
    {
        MemorySnapshot m = _device.Memory.Snapshot();
        long[] mine = { m.Parameters, m.Gradients, m.OptimizerState, m.Communication, m.Activations, m.Peak };
        const int Fields = 6;
        var halves = new float[2 * Fields];
        for (int i = 0; i < Fields; i++) (halves[2 * i], halves[2 * i + 1]) = (mine[i] >> 24, mine[i] & 0xFFFFFF);
        using var input = _device.Upload<float>(halves);
        using var all = _device.Allocate<float>(2L * Fields * _env.WorldSize);
        _comm.AllGather(input.View, all.View).Wait();
        float[] gathered = _device.Download<float>(all.View);
        return Enumerable.Range(0, _env.WorldSize).Select(r =>
        {
            long F(int i) => ((long)gathered[2 * Fields * r + 2 * i] << 24) + (long)gathered[2 * Fields * r + 2 * i + 1];
            return new RankMemory(r, F(0), F(1), F(2), F(3), F(4), F(5));
        }).ToList();
    }

    public override void Dispose()
    {
        _batches?.Dispose();
        _loss?.Dispose();
        _strategy?.Dispose();
        _model?.Dispose();
        _scalars?.Dispose();
        _hashes?.Dispose();
        _comm?.Dispose();
        _device?.Dispose();
    }
}
