using System.Diagnostics;
using Engine.Nn;
using Engine.Nn.Checkpoints;
using Engine.Runner.Data;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>
/// Single-device training, the seed's baseline: for each step, data -> device -> model -> loss ->
/// backward -> optimizer. Epoch time is measured as the seed does (synchronise, time the whole
/// epoch of training steps; evaluation is timed apart).
/// </summary>
public sealed class SingleTrainer : IDisposable
{
    private readonly TrainOptions _o;
    private readonly TextWriter _out, _progress;
    private readonly Device _device;
    private readonly ImageDataset _train, _test;
    private readonly ResNet _model;
    private readonly SgdOptimizer _optimizer;
    private readonly CrossEntropyLoss _loss;
    private readonly BatchSource _batches;
    private readonly int _startEpoch;
    private readonly string _runId;

    public SingleTrainer(TrainOptions options, TextWriter stdout, TextWriter progress)
    {
        options.Validate();
        _o = options;
        _out = stdout;
        _progress = progress;
        ResNetConfig config = ResNetConfig.Parse(options.Model, options.Stem, options.Width);
        (_train, _test) = LoadData(options, progress);
        if (options.BatchSize > _train.Count)
        {
            throw new ArgumentException($"--batch-size {options.BatchSize} is larger than the {_train.Count} training images: no full batch exists (drop_last).");
        }
        _device = Device.Create(options.Device);
        try
        {
            _progress.WriteLine($"device: {_device}");
            _model = new ResNet(_device, config);
            _optimizer = new SgdOptimizer(_device, _model.Store, options.Lr, options.Momentum, options.WeightDecay);
            _loss = new CrossEntropyLoss(_device);
            _batches = new BatchSource(_device, _train, options.BatchSize);
            _runId = Guid.NewGuid().ToString("N")[..12];
            if (options.Resume is not null)
            {
                TrainingState state = ModelCheckpoint.Resume(options.Resume, _model, _optimizer);
                if (state.Model != config.ModelName || state.Stem != config.Stem || state.Width != config.Width)
                {
                    throw new CheckpointException($"--resume {options.Resume} holds {state.Model} (stem {state.Stem}, width {state.Width}), but this run asks for {config.ModelName} (stem {config.Stem}, width {config.Width}).");
                }
                if (state.Seed != options.Seed)
                {
                    throw new CheckpointException($"--resume {options.Resume} was trained with --seed {state.Seed}; pass the same seed to continue it exactly (got {options.Seed}).");
                }
                _startEpoch = state.EpochsDone;
                _runId = state.RunId;
                _progress.WriteLine($"resumed from {options.Resume}: {state.EpochsDone} epoch(s), {state.OptimizerSteps} step(s) done");
            }
            else if (options.Init is not null)
            {
                ModelCheckpoint.LoadModel(options.Init, _model);
                _progress.WriteLine($"initial weights from {options.Init}");
            }
            else
            {
                _model.Initialize(options.Seed);
            }
            _progress.WriteLine($"model: {config.ModelName}, stem {config.Stem}, width {config.Width}, {_model.Store.ParameterCount:N0} parameters");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public ResNet Model => _model;

    internal static (ImageDataset Train, ImageDataset Test) LoadData(TrainOptions o, TextWriter progress)
    {
        var (train, test) = DatasetLoader.Load(o.Dataset, o.Data, o.Seed);
        if (o.Dataset == "synthetic")
        {
            progress.WriteLine("data: synthetic CIFAR-shaped images (no --data given; deterministic from --seed, learnable, not CIFAR-10)");
        }
        if (o.TrainLimit is int tl) train = train.Take(tl);
        if (o.TestLimit is int el) test = test.Take(el);
        progress.WriteLine($"data: {train.Name}, {train.Count} train / {test.Count} test images");
        return (train, test);
    }

    public RunResult Run()
    {
        var epochs = new List<EpochResult>();
        int steps = _train.Count / _o.BatchSize;
        for (int epoch = _startEpoch; epoch < _o.Epochs; epoch++)
        {
            int[] order = _o.Shuffle ? EpochOrder.Permutation(_train.Count, _o.Seed, epoch) : Enumerable.Range(0, _train.Count).ToArray();
            double lossSum = 0;
            long correct = 0;
            _device.Synchronize();
            var clock = Stopwatch.StartNew();
            var lastReport = Stopwatch.StartNew();
            for (int step = 0; step < steps; step++)
            {
                var (x, labels) = _batches.Load(order.AsSpan(step * _o.BatchSize, _o.BatchSize), _o.Augment == "standard", Rng.For(_o.Seed, epoch, step));
                Tensor logits = _model.Forward(x, training: true);
                _loss.Forward(logits, labels);
                _model.Backward(_loss.Backward());
                _optimizer.Step();
                var (loss, right) = _loss.Read();
                if (!float.IsFinite(loss)) throw new TrainingDivergedException(epoch + 1, step + 1, loss);
                lossSum += loss;
                correct += right;
                if (lastReport.Elapsed.TotalSeconds >= 5 || step == steps - 1)
                {
                    _progress.WriteLine($"epoch {epoch + 1}/{_o.Epochs} step {step + 1}/{steps} loss {lossSum / (step + 1):F4} ({clock.Elapsed.TotalSeconds:F1} s)");
                    lastReport.Restart();
                }
            }
            _device.Synchronize();
            double seconds = clock.Elapsed.TotalSeconds;
            double? testAccuracy = _test.Count == 0 ? null : Evaluate();
            var result = new EpochResult(epoch + 1, seconds, lossSum / steps, (double)correct / ((long)steps * _o.BatchSize), testAccuracy, steps,
                (double)steps * _o.BatchSize / seconds);
            epochs.Add(result);
            _out.WriteLine($"epoch {result.Epoch}/{_o.Epochs}  time {result.Seconds:F3} s  train loss {result.TrainLoss:F4}  train acc {100 * result.TrainAccuracy:F2}%  test acc {(testAccuracy is double t ? $"{100 * t:F2}%" : "n/a")}");
            if (_o.Save is not null) Save(epoch + 1);
        }
        var run = new RunResult(_o, _device.ToString(), _train.Name, _model.Store.ParameterCount, epochs);
        if (epochs.Count > 0)
        {
            _out.WriteLine($"mean epoch time {run.MeanEpochSeconds:F3} s" + (run.MeanEpochSecondsExcludingFirst is double m ? $" ({m:F3} s without the first)" : ""));
        }
        if (_o.Output is not null) run.Write(_o.Output);
        return run;
    }

    /// <summary>Test accuracy with BN in eval mode, over every test image (the last batch may be partial).</summary>
    public double Evaluate()
    {
        using var source = new BatchSource(_device, _test, Math.Min(_o.BatchSize, _test.Count));
        long correct = 0;
        for (int start = 0; start < _test.Count; start += source.MaxBatch)
        {
            int n = Math.Min(source.MaxBatch, _test.Count - start);
            int[] idx = Enumerable.Range(start, n).ToArray();
            var (x, labels) = source.Load(idx, augment: false, rng: null);
            _loss.Forward(_model.Forward(x, training: false), labels);
            correct += _loss.Read().Correct;
        }
        return (double)correct / _test.Count;
    }

    private void Save(int epochsDone)
    {
        var state = new TrainingState(epochsDone, _optimizer.Steps, _o.Seed, _model.Config.ModelName, _model.Config.Stem, _model.Config.Width, _runId);
        // The state file goes first: a crash between the two writes leaves a model whose metadata does not match it, which --resume refuses.
        ModelCheckpoint.SaveTrainingState(_o.Save!, _model, _optimizer, state);
        ModelCheckpoint.SaveModel(_o.Save!, _model, new Dictionary<string, string>
        {
            ["run_id"] = _runId,
            ["optimizer_steps"] = _optimizer.Steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["format"] = "torchvision state_dict",
        });
    }

    public void Dispose()
    {
        _batches?.Dispose();
        _loss?.Dispose();
        _optimizer?.Dispose();
        _model?.Dispose();
        _device?.Dispose();
    }
}
