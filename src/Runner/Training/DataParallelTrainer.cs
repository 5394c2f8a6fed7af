using Engine.Nn;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>
/// torch.nn.DataParallel's training step (<see cref="DataParallel"/>): scatter, replicate, parallel forward,
/// gather, loss on device 0, the output gradient scattered, parallel backward, gradients reduce-added onto
/// device 0, and one optimizer step there. Each step is one timed phase.
/// </summary>
public sealed class DataParallelTrainer : Trainer
{
    private readonly ILGPU.Context _context;
    private readonly Device[] _devices;
    private readonly DataParallel _dp;
    private readonly SgdOptimizer _optimizer;
    private readonly CrossEntropyLoss _loss;
    private readonly BatchSource _batches;
    private readonly bool _shared;

    public DataParallelTrainer(TrainOptions options, TextWriter stdout, TextWriter progress) : base(options, stdout, progress)
    {
        string[] specs = options.DeviceList();
        CheckBatchFits(TrainData.Count, $"per device, x {specs.Length} devices");
        _context = Device.CreateContext();
        try
        {
            _devices = specs.Select(s => Device.Create(s, _context)).ToArray();
            _shared = _devices.Select(d => d.Spec).Distinct().Count() < _devices.Length || _devices.Any(d => d.IsCpu);
            Progress.WriteLine($"dp: {_devices.Length} replicas on {string.Join(", ", _devices.Select(d => d.ToString()))}{(_shared ? " (shared physical device)" : "")}" +
                (options.DpSerialDispatch ? ", one host thread drives them all" : ", one host thread per device"));
            _dp = new DataParallel(_devices, Config, options.BatchSize, new[] { TrainData.Channels, TrainData.Height, TrainData.Width });
            _optimizer = new SgdOptimizer(_devices[0], Master.Store, options.Lr, options.Momentum, options.WeightDecay);
            _loss = new CrossEntropyLoss(_devices[0]);
            _batches = new BatchSource(_devices[0], TrainData, GlobalBatch);
            InitialiseModel();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private ResNet Master => _dp.Master;
    public override ResNet Model => Master;
    protected override IOptimizer Optimizer => _optimizer;
    protected override IReadOnlyList<Device> Devices => _devices;
    public override bool Shared => _shared;
    public IReadOnlyList<ResNet> Replicas => _dp.Replicas;
    protected override int GlobalBatch => O.BatchSize * O.DeviceList().Length;
    protected override int PerStepIndices => GlobalBatch;
    protected override int StepsPerEpoch => TrainData.Count / GlobalBatch;

    protected override StepOutcome Step(int epoch, int step, ReadOnlySpan<int> indices, PhaseClock clock)
    {
        int n = _devices.Length;
        var (x, labels) = _batches.Load(indices, O.Augment == "standard", Rng.For(O.Seed, epoch, step), clock);
        Tensor[] inputs;
        using (clock.Phase("scatter", _dp.ScatterBytes)) inputs = _dp.Scatter(x, labels);
        using (clock.Phase("replicate", _dp.ReplicateBytes)) _dp.Replicate();
        var logits = new Tensor[n];
        using (clock.Phase("forward")) _dp.ParallelApply(Timed(clock, "forward", r => logits[r] = _dp.Replicas[r].Forward(inputs[r], training: true)), O.DpSerialDispatch);
        Tensor output;
        using (clock.Phase("gather", _dp.OutputBytes)) output = _dp.Gather(logits);
        Tensor dlogits;
        using (clock.Phase("loss"))
        {
            _loss.Forward(output, labels);
            dlogits = _loss.Backward(1f / (n * O.BatchSize));
        }
        Tensor[] douts;
        using (clock.Phase("scatter", _dp.OutputBytes)) douts = _dp.ScatterGradient(dlogits);
        using (clock.Phase("backward")) _dp.ParallelApply(Timed(clock, "backward", r => _dp.Replicas[r].Backward(douts[r])), O.DpSerialDispatch);
        using (clock.Phase("grad_sync", _dp.ReduceBytes)) _dp.ReduceAddGradients();
        using (clock.Phase("optimizer")) _optimizer.Step();
        var (loss, correct) = _loss.Read();
        return new StepOutcome((double)loss * indices.Length, correct, indices.Length);
    }

    /// <summary>With a trace, each replica's work is a slice on its device's track.</summary>
    private Action<int> Timed(PhaseClock clock, string phase, Action<int> work) => clock.Trace is null ? work : r =>
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        work(r);
        _devices[r].Synchronize();
        clock.Trace.Slice($"{phase} replica {r}", "replica", $"device {r}", start, System.Diagnostics.Stopwatch.GetTimestamp());
    };

    protected override string TraceTrack => "device 0 (host thread of the step)";

    protected override double? Evaluate() => EvaluateOn(_devices[0], Master, _loss);

    public override void Dispose()
    {
        _batches?.Dispose();
        _loss?.Dispose();
        _optimizer?.Dispose();
        _dp?.Dispose();
        foreach (var d in _devices ?? Array.Empty<Device>()) d?.Dispose();
        _context?.Dispose();
    }
}
