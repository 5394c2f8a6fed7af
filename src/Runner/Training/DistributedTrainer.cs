using Engine.Comm;
using Engine.Nn;
using Engine.Runner.Data;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>
/// DistributedDataParallel: one process per replica, started by <c>engine launch</c> (or any launcher
/// that sets torchrun's variables). Rank 0 broadcasts parameters and buffers at start and buffers
/// before each forward; gradients are all-reduced in buckets that overlap backward (<see cref="DdpReducer"/>);
/// every rank steps its own SGD. Each epoch's permutation is split round-robin into disjoint rank
/// shards, like DistributedSampler(drop_last=True). Only rank 0 prints and writes files.
/// </summary>
public sealed class DistributedTrainer : Trainer
{
    private readonly LaunchEnvironment _env;
    private readonly Device _device;
    private readonly ICommunicator _comm;
    private readonly ResNet _model;
    private readonly SgdOptimizer _optimizer;
    private readonly CrossEntropyLoss _loss;
    private readonly BatchSource _batches;
    private readonly DdpReducer _reducer;
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
                Progress.WriteLine($"ddp: {env.WorldSize} rank(s), backend {_comm.Backend}, device {_device}{(_shared ? " (ranks share a physical device)" : "")}, " +
                    $"buckets {(options.NoOverlap ? "after backward" : "overlapping backward")}");
            }
            _model = new ResNet(_device, Config);
            _optimizer = new SgdOptimizer(_device, _model.Store, options.Lr, options.Momentum, options.WeightDecay);
            _loss = new CrossEntropyLoss(_device);
            _batches = new BatchSource(_device, TrainData, options.BatchSize);
            _reducer = new DdpReducer(_comm, _model.Store, options.BucketMb, overlap: !options.NoOverlap);
            _model.GradientReady += _reducer.MarkReady;
            _scalars = _device.Allocate<float>(3);
            _hashes = _device.Allocate<float>(4L * env.WorldSize);
            InitialiseModel();
            // DDP's constructor: every rank starts from rank 0's parameters and buffers.
            _comm.Broadcast(_model.Store.Values.SubView(0, _model.Store.ParameterCount), 0).Wait();
            _comm.Broadcast(_model.Store.BufferValues.SubView(0, _model.Store.BufferCount), 0).Wait();
            if (IsLeader)
            {
                Progress.WriteLine($"ddp: {_reducer.Buckets.Count} gradient bucket(s): {string.Join(", ", _reducer.Buckets.Select(b => $"{b.Length * 4 / 1e6:F2} MB"))}");
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
    protected override SgdOptimizer Optimizer => _optimizer;
    protected override IReadOnlyList<Device> Devices => new[] { _device };
    public override string ModeName => "ddp";
    public override bool Shared => _shared;
    public int Rank => _env.Rank;
    public DdpReducer Reducer => _reducer;
    protected override int GlobalBatch => O.BatchSize;
    protected override int PerStepIndices => O.BatchSize;
    protected override int StepsPerEpoch => TrainData.Count / _env.WorldSize / O.BatchSize;
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
        var (x, labels) = _batches.Load(indices, O.Augment == "standard", Rng.For(O.Seed, epoch, step, _env.Rank), clock);
        clock.Begin("replicate");

        // broadcast_buffers=True: rank 0's BN running statistics before every forward.
        if (_env.WorldSize > 1) _comm.Broadcast(_model.Store.BufferValues.SubView(0, _model.Store.BufferCount), 0).Wait();
        clock.Mark("replicate", _env.WorldSize > 1 ? _model.Store.BufferCount * sizeof(float) : 0);
        clock.Begin("forward");

        Tensor logits = _model.Forward(x, training: true);
        clock.Mark("forward");
        clock.Begin("loss");
        _loss.Forward(logits, labels);
        Tensor dlogits = _loss.Backward();
        clock.Mark("loss");
        clock.Begin("backward");

        _reducer.Prepare();
        _model.Backward(dlogits);
        clock.Mark("backward");
        clock.Begin("grad_sync");
        _reducer.Finish();
        clock.Mark("grad_sync", _reducer.RingBytesPerRank());
        clock.AddHidden(_reducer.HiddenSeconds());
        _reducer.TraceBuckets(clock.Trace, $"rank {_env.Rank} all-reduce");
        clock.Begin("optimizer");

        _optimizer.Step();
        clock.Mark("optimizer");
        if (O.VerifyReplicas) VerifyReplicas(epoch, step);
        var (loss, correct) = _loss.Read();
        return new StepOutcome((double)loss * indices.Length, correct, indices.Length);
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

    /// <summary>Every rank hashes its parameters; the hashes are gathered and must all be equal.</summary>
    private void VerifyReplicas(int epoch, int step)
    {
        float[] values = _model.Store.DownloadValues(_device);
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
    protected override int GradientBuckets => _reducer.Buckets.Count;

    protected override double? Evaluate()
    {
        double? accuracy = IsLeader ? EvaluateOn(_device, _model, _loss) : null;
        if (_env.WorldSize > 1) _comm.Barrier().Wait();
        return accuracy;
    }

    public override void Dispose()
    {
        _batches?.Dispose();
        _loss?.Dispose();
        _optimizer?.Dispose();
        _model?.Dispose();
        _scalars?.Dispose();
        _hashes?.Dispose();
        _comm?.Dispose();
        _device?.Dispose();
    }
}
