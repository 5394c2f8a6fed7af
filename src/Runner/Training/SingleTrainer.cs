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
    private readonly GradientAccumulator _accumulator;

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
            _accumulator = new GradientAccumulator(_device, _model.Store.FlatLength);
            InitialiseModel();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public override ResNet Model => _model;
    protected override IOptimizer Optimizer => _optimizer;
    protected override IReadOnlyList<Device> Devices => new[] { _device };
    protected override int GlobalBatch => O.BatchSize * O.Accumulate;
    protected override int PerStepIndices => GlobalBatch;
    protected override int StepsPerEpoch => TrainData.Count / GlobalBatch;

    protected override StepOutcome Step(int epoch, int step, ReadOnlySpan<int> indices, PhaseClock clock)
    {
        int b = O.BatchSize, micro = O.Accumulate;
        var outcome = new StepOutcome(0, 0, 0);
        for (int m = 0; m < micro; m++)
        {
            var (x, labels) = _batches.Load(indices.Slice(m * b, b), O.Augment == "standard", Rng.For(O.Seed, epoch, step * micro + m), clock);
            Tensor logits;
            using (clock.Phase("forward")) logits = _model.Forward(x, training: true);
            Tensor dlogits;
            using (clock.Phase("loss"))
            {
                _loss.Forward(logits, labels);
                dlogits = _loss.Backward(1f / (b * micro));
            }
            using (clock.Phase("backward"))
            {
                _model.Backward(dlogits);
                // Gradient accumulation: the layers overwrite gradients, so earlier micro-batches' are kept aside.
                if (m < micro - 1) _accumulator.Keep(_model.Store.Grads.SubView(0, _model.Store.FlatLength));
                else
                {
                    _accumulator.AddTo(_model.Store.Grads.SubView(0, _model.Store.FlatLength), 0);
                    _accumulator.Clear();
                }
            }
            var (loss, correct) = _loss.Read();
            outcome = new StepOutcome(outcome.LossSum + (double)loss * b, outcome.Correct + correct, outcome.Samples + b);
        }
        using (clock.Phase("optimizer")) _optimizer.Step();
        return outcome;
    }

    protected override double? Evaluate() => EvaluateOn(_device, _model, _loss);

    public override void Dispose()
    {
        _batches?.Dispose();
        _accumulator?.Dispose();
        _loss?.Dispose();
        _optimizer?.Dispose();
        _model?.Dispose();
        _device?.Dispose();
    }
}
