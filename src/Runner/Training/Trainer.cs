using System.Diagnostics;
using Engine.Kernels;
using Engine.Nn;
using Engine.Nn.Checkpoints;
using Engine.Runner.Data;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>What one training step reports back to the epoch loop.</summary>
public readonly record struct StepOutcome(double LossSum, long Correct, int Samples);

/// <summary>
/// The epoch loop every mode shares: shuffle (from --seed and the epoch, so a resumed run repeats
/// it), time each epoch as the seed does (synchronise, time the training steps; evaluation apart),
/// print one line per epoch, save, and write the JSON. A mode supplies its step, its evaluation and
/// its model for checkpoints.
/// </summary>
public abstract class Trainer : IDisposable
{
    protected Trainer(TrainOptions options, TextWriter stdout, TextWriter progress, bool isLeader = true)
    {
        options.Validate();
        O = options;
        Out = stdout;
        Progress = progress;
        IsLeader = isLeader;
        Config = ResNetConfig.Parse(options.Model, options.Stem, options.Width) with { FreezeBatchNorm = options.BnMode == "eval" };
        Mode = options.Mode;
        (TrainData, TestData) = LoadData(options, isLeader ? progress : TextWriter.Null);
    }

    protected TrainOptions O { get; }
    protected TextWriter Out { get; }
    protected TextWriter Progress { get; }
    protected ResNetConfig Config { get; }
    public ImageDataset TrainData { get; }
    public ImageDataset TestData { get; }

    /// <summary>Only the leader (rank 0) prints epoch lines and writes files.</summary>
    protected bool IsLeader { get; }

    protected int StartEpoch { get; set; }
    protected string RunId { get; set; } = Guid.NewGuid().ToString("N")[..12];

    /// <summary>The model whose weights are the result (device 0's in DP, this rank's in DDP).</summary>
    public abstract ResNet Model { get; }
    protected abstract IOptimizer Optimizer { get; }
    protected abstract IReadOnlyList<Device> Devices { get; }
    public TrainingMode Mode { get; }
    public string ModeName => Mode.Name;

    /// <summary>True when several replicas share one physical device (CPU accelerators, or one GPU twice).</summary>
    public virtual bool Shared => false;

    public PhaseClock? Clock { get; private set; }

    /// <summary>Test hook: replaces the epoch's sample order (epoch, count) -> permutation.</summary>
    internal Func<int, int, int[]>? OrderOverride { get; set; }

    /// <summary>Called after every optimizer step with (epoch, step) (tests check replicas there).</summary>
    internal Action<int, int>? AfterStep { get; set; }

    /// <summary>Samples per optimizer step over all replicas.</summary>
    protected abstract int GlobalBatch { get; }

    /// <summary>The indices this replica-set trains on in <paramref name="epoch"/>, in order (DDP: this rank's shard).</summary>
    protected virtual int[] EpochIndices(int[] order) => order;

    protected abstract int StepsPerEpoch { get; }

    protected abstract StepOutcome Step(int epoch, int step, ReadOnlySpan<int> indices, PhaseClock clock);

    /// <summary>Reduces per-epoch sums across ranks (DDP); identity elsewhere.</summary>
    protected virtual StepOutcome ReduceEpoch(StepOutcome local) => local;

    /// <summary>Test accuracy over every test image with BN in eval mode; null where this replica does not evaluate.</summary>
    protected abstract double? Evaluate();

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

    /// <summary>Loads --resume or --init into <see cref="Model"/>, or initialises it from --seed.</summary>
    protected void InitialiseModel()
    {
        if (O.Resume is not null)
        {
            var (state, modelFile) = ModelCheckpoint.Resume(O.Resume, Model, Optimizer);
            if (state.Model != Config.ModelName || state.Stem != Config.Stem || state.Width != Config.Width)
            {
                throw new CheckpointException($"--resume {O.Resume} holds {state.Model} (stem {state.Stem}, width {state.Width}), but this run asks for {Config.ModelName} (stem {Config.Stem}, width {Config.Width}).");
            }
            if (state.Seed != O.Seed)
            {
                throw new CheckpointException($"--resume {O.Resume} was trained with --seed {state.Seed}; pass the same seed to continue it exactly (got {O.Seed}).");
            }
            StartEpoch = state.EpochsDone;
            RunId = state.RunId;
            Progress.WriteLine($"resumed from {modelFile}: {state.EpochsDone} epoch(s), {state.OptimizerSteps} step(s) done" +
                (modelFile != O.Resume ? " (the last complete save; a later one was interrupted)" : ""));
        }
        else if (O.Init is not null)
        {
            ModelCheckpoint.LoadModel(O.Init, Model);
            Progress.WriteLine($"initial weights from {O.Init}");
        }
        else
        {
            Model.Initialize(O.Seed);
        }
        if (IsLeader)
        {
            Progress.WriteLine($"model: {Config.ModelName}, stem {Config.Stem}, width {Config.Width}, {Model.Store.ParameterCount:N0} parameters");
        }
    }

    protected void CheckBatchFits(int samplesPerReplicaSet, string what)
    {
        if (GlobalBatch > samplesPerReplicaSet)
        {
            throw new ArgumentException($"--batch-size {O.BatchSize} ({what}) needs {GlobalBatch} images per step, more than the {samplesPerReplicaSet} training images: no full batch exists (drop_last).");
        }
    }

    public RunResult Run()
    {
        var epochs = new List<EpochResult>();
        var trace = O.Trace is null ? null : new TraceRecorder(TraceProcessId, TraceProcessName);
        var clock = new PhaseClock(Devices, trace, TraceTrack);
        Clock = clock;
        KernelProfiler? profiler = O.Profile == "kernels" ? new KernelProfiler() : null;
        if (profiler is not null && trace is not null)
        {
            // Kernels as slices on a track of their own per device, under the phases.
            profiler.SliceSink = (name, device, start, end, cost) => trace.Slice(
                name.StartsWith("memcpy", StringComparison.Ordinal) ? name : "Kernel_" + name, "kernel", $"{KernelTrackPrefix}device {IndexOf(device)} kernels ({device.Spec})", start, end, cost.Bytes,
                cost.Flops > 0 ? $"{cost.Flops} FLOP" : null);
        }
        foreach (Device d in Devices) d.Profiler = profiler;
        foreach (Device d in Devices) d.Memory.ResetPeak();
        IReadOnlyList<RankMemory>? memory = null;
        for (int epoch = StartEpoch; epoch < O.Epochs; epoch++)
        {
            int[] order = OrderOverride?.Invoke(epoch, TrainData.Count)
                ?? (O.Shuffle ? EpochOrder.Permutation(TrainData.Count, O.Seed, epoch) : Enumerable.Range(0, TrainData.Count).ToArray());
            int[] indices = EpochIndices(order);
            int steps = StepsPerEpoch;
            int batch = PerStepIndices;
            var sum = new StepOutcome(0, 0, 0);
            foreach (Device d in Devices) d.Synchronize();
            var watch = Stopwatch.StartNew();
            var lastReport = Stopwatch.StartNew();
            for (int step = 0; step < steps; step++)
            {
                clock.BeginStep();
                if (profiler is not null) foreach (Device d in Devices) profiler.Anchor(d);
                StepOutcome s = Step(epoch, step, indices.AsSpan(step * batch, batch), clock);
                clock.EndStep();
                profiler?.Flush(); // resolve this step's markers now, so a long run holds no more than one step's events
                double meanLoss = s.LossSum / Math.Max(1, s.Samples);
                if (!double.IsFinite(meanLoss)) throw new TrainingDivergedException(epoch + 1, step + 1, (float)meanLoss);
                sum = new StepOutcome(sum.LossSum + s.LossSum, sum.Correct + s.Correct, sum.Samples + s.Samples);
                AfterStep?.Invoke(epoch, step);
                if (IsLeader && (lastReport.Elapsed.TotalSeconds >= 5 || step == steps - 1))
                {
                    Progress.WriteLine($"epoch {epoch + 1}/{O.Epochs} step {step + 1}/{steps} loss {sum.LossSum / sum.Samples:F4} ({watch.Elapsed.TotalSeconds:F1} s; " +
                        ProgressLine.Training(step + 1, steps, GlobalBatch, watch.Elapsed.TotalSeconds, O.Epochs - epoch - 1) + ")");
                    lastReport.Restart();
                }
            }
            foreach (Device d in Devices) d.Synchronize();
            double seconds = watch.Elapsed.TotalSeconds;
            memory = GatherMemory(); // after the training steps, before evaluation
            StepOutcome all = ReduceEpoch(sum);
            foreach (Device d in Devices) d.Profiler = null;
            double? testAccuracy = TestData.Count == 0 ? null : Evaluate();
            foreach (Device d in Devices) d.Profiler = profiler;
            var result = new EpochResult(epoch + 1, seconds, all.LossSum / all.Samples, (double)all.Correct / all.Samples, testAccuracy, steps,
                all.Samples / seconds);
            epochs.Add(result);
            if (IsLeader)
            {
                Out.WriteLine($"epoch {result.Epoch}/{O.Epochs}  time {result.Seconds:F3} s  train loss {result.TrainLoss:F4}  train acc {100 * result.TrainAccuracy:F2}%  test acc {(testAccuracy is double t ? $"{100 * t:F2}%" : "n/a")}");
            }
            if (O.Save is not null) SaveCheckpoint(epoch + 1);
        }
        // Evaluation launches kernels too; the table covers the training steps only.
        foreach (Device d in Devices) d.Profiler = null;
        IReadOnlyList<KernelStat>? kernels = profiler?.Stats();
        var run = new RunResult(O, string.Join(", ", Devices.Select(d => d.ToString())), TrainData.Name, Model.Store.ParameterCount, epochs)
        {
            Breakdown = clock.ToBreakdown(ModeName, Devices.Count, Shared) with { GradientBuckets = GradientBuckets },
            KernelProfile = kernels,
            Memory = memory,
        };
        if (IsLeader && kernels is not null)
        {
            Out.WriteLine();
            Out.WriteLine($"kernel profile ({ModeName}, {Devices.Count} device(s){(Devices.Count > 1 ? ", all devices summed" : "")}):");
            Out.Write(KernelProfiler.Table(kernels, clock.StepSeconds, clock.Steps));
        }
        if (trace is not null) WriteTrace(trace, O.Trace!);
        if (IsLeader)
        {
            if (epochs.Count > 0)
            {
                Out.WriteLine($"mean epoch time {run.MeanEpochSeconds:F3} s" + (run.MeanEpochSecondsExcludingFirst is double m ? $" ({m:F3} s without the first)" : ""));
            }
            if (memory is { Count: > 0 })
            {
                Out.WriteLine("device memory after training, MiB (parameters / gradients / optimizer state / communication / activations; peak during training):");
                foreach (RankMemory m in memory)
                {
                    static string MiB(long b) => (b / (1024.0 * 1024)).ToString("F3", System.Globalization.CultureInfo.InvariantCulture);
                    Out.WriteLine($"  {(Mode.MultiProcess ? "rank" : "device")} {m.Rank}: {MiB(m.Parameters)} / {MiB(m.Gradients)} / {MiB(m.OptimizerState)} / {MiB(m.Communication)} / {MiB(m.Activations)}; peak {MiB(m.Peak)}");
                }
            }
            if (O.Output is not null) run.Write(O.Output);
        }
        return run;
    }

    private int IndexOf(Device device)
    {
        for (int i = 0; i < Devices.Count; i++) if (ReferenceEquals(Devices[i], device)) return i;
        return -1;
    }

    /// <summary>DDP: the number of gradient buckets; 0 for modes without buckets.</summary>
    protected virtual int GradientBuckets => 0;

    /// <summary>Prefix of the kernel tracks (DDP: the rank), so that ranks sharing a device keep separate tracks.</summary>
    protected virtual string KernelTrackPrefix => "";

    protected virtual int TraceProcessId => 0;
    protected virtual string TraceProcessName => $"{ModeName} (one process)";
    protected virtual string TraceTrack => "device 0";

    /// <summary>Writes the trace (DDP: each rank a part, merged by rank 0).</summary>
    protected virtual void WriteTrace(TraceRecorder trace, string path)
    {
        trace.Write(path);
        Progress.WriteLine($"trace: {path} (open in Perfetto or chrome://tracing)");
    }

    /// <summary>Indices one step consumes from <see cref="EpochIndices"/>.</summary>
    protected abstract int PerStepIndices { get; }

    /// <summary>Called on every rank after each epoch with --save; the leader writes the checkpoint.</summary>
    protected virtual void SaveCheckpoint(int epochsDone)
    {
        if (IsLeader) WriteCheckpoint(epochsDone, Optimizer.DownloadMomentum());
    }

    /// <summary>Writes the model and its training state (momentum in the store's flat layout) atomically to --save.</summary>
    protected void WriteCheckpoint(int epochsDone, float[] momentum)
    {
        var state = new TrainingState(epochsDone, Optimizer.Steps, O.Seed, Config.ModelName, Config.Stem, Config.Width, RunId);
        ModelCheckpoint.Save(O.Save!, Model, momentum, state, new Dictionary<string, string> { ["format"] = "torchvision state_dict" });
    }

    /// <summary>Every device's (every rank's) memory by use; the multi-process modes gather all ranks'.</summary>
    protected virtual IReadOnlyList<RankMemory> GatherMemory() => Devices.Select((d, i) => RankMemory.From(i, d.Memory.Snapshot())).ToList();

    /// <summary>Evaluates <paramref name="model"/> on <paramref name="device"/> over the whole test set.</summary>
    protected double EvaluateOn(Device device, ResNet model, CrossEntropyLoss loss)
    {
        using var source = new BatchSource(device, TestData, Math.Min(O.BatchSize, TestData.Count));
        long correct = 0;
        var idx = new int[source.MaxBatch];
        var watch = Stopwatch.StartNew();
        var lastReport = Stopwatch.StartNew();
        for (int start = 0; start < TestData.Count; start += source.MaxBatch)
        {
            int n = Math.Min(source.MaxBatch, TestData.Count - start);
            for (int i = 0; i < n; i++) idx[i] = start + i;
            var (x, labels) = source.Load(idx.AsSpan(0, n), augment: false, rng: null);
            loss.Forward(model.Forward(x, training: false), labels);
            correct += loss.Read().Correct;
            int done = start + n;
            if (IsLeader && (lastReport.Elapsed.TotalSeconds >= 5 || done == TestData.Count))
            {
                Progress.WriteLine($"evaluation {done}/{TestData.Count} images ({watch.Elapsed.TotalSeconds:F1} s; {ProgressLine.Evaluation(done, TestData.Count, watch.Elapsed.TotalSeconds)})");
                lastReport.Restart();
            }
        }
        return (double)correct / TestData.Count;
    }

    public abstract void Dispose();
}
