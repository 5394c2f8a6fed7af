using Engine.Nn;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>
/// Single-device training, the seed's baseline: each step is data -> device -> model -> loss ->
/// backward -> optimizer.
/// </summary>
public sealed class SingleTrainer : Trainer
{
    private readonly Device _device;
    private readonly ResNet _model;
    private readonly SgdOptimizer _optimizer;
    private readonly CrossEntropyLoss _loss;
    private readonly BatchSource _batches;

    public SingleTrainer(TrainOptions options, TextWriter stdout, TextWriter progress) : base(options, stdout, progress)
    {
        CheckBatchFits(TrainData.Count, "single device");
        _device = Device.Create(options.Device);
        try
        {
            Progress.WriteLine($"device: {_device}");
            _model = new ResNet(_device, Config);
            _optimizer = new SgdOptimizer(_device, _model.Store, options.Lr, options.Momentum, options.WeightDecay);
            _loss = new CrossEntropyLoss(_device);
            _batches = new BatchSource(_device, TrainData, options.BatchSize);
            InitialiseModel();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public override ResNet Model => _model;
    protected override SgdOptimizer Optimizer => _optimizer;
    protected override IReadOnlyList<Device> Devices => new[] { _device };
    public override string ModeName => "single";
    protected override int GlobalBatch => O.BatchSize;
    protected override int PerStepIndices => O.BatchSize;
    protected override int StepsPerEpoch => TrainData.Count / O.BatchSize;

    protected override StepOutcome Step(int epoch, int step, ReadOnlySpan<int> indices, PhaseClock clock)
    {
        var (x, labels) = _batches.Load(indices, O.Augment == "standard", Rng.For(O.Seed, epoch, step), clock);
        clock.Begin("forward");
        Tensor logits = _model.Forward(x, training: true);
        clock.Mark("forward");
        clock.Begin("loss");
        _loss.Forward(logits, labels);
        Tensor dlogits = _loss.Backward();
        clock.Mark("loss");
        clock.Begin("backward");
        _model.Backward(dlogits);
        clock.Mark("backward");
        clock.Begin("optimizer");
        _optimizer.Step();
        clock.Mark("optimizer");
        var (loss, correct) = _loss.Read();
        return new StepOutcome((double)loss * indices.Length, correct, indices.Length);
    }

    protected override double? Evaluate() => EvaluateOn(_device, _model, _loss);

    public override void Dispose()
    {
        _batches?.Dispose();
        _loss?.Dispose();
        _optimizer?.Dispose();
        _model?.Dispose();
        _device?.Dispose();
    }
}
