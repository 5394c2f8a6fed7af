using Engine.Kernels;
using Engine.Nn;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>
/// torch.nn.DataParallel: one process drives N devices. Every step reads as PyTorch's forward does:
/// scatter the batch from device 0, replicate parameters and buffers from device 0, forward in
/// parallel, gather the outputs on device 0, loss there, scatter the output gradient, backward in
/// parallel, reduce-add the gradients onto device 0, and step the optimizer on device 0 only. BN
/// running statistics survive only from device 0's replica (the next replicate overwrites the rest).
/// </summary>
public sealed class DataParallelTrainer : Trainer
{
    private readonly ILGPU.Context _context;
    private readonly Device[] _devices;
    private readonly ResNet[] _replicas;
    private readonly SgdOptimizer _optimizer;
    private readonly CrossEntropyLoss _loss;
    private readonly BatchSource _batches;
    private readonly MemoryBuffer1D<float, Stride1D.Dense>[] _inputs, _dlogits;
    private readonly MemoryBuffer1D<int, Stride1D.Dense>[] _labels;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _gathered, _gradScratch;
    private readonly DeviceTransfer _transfer = new();
    private readonly bool _shared;
    private float[] _hostParams = Array.Empty<float>(), _hostBuffers = Array.Empty<float>();

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
            _replicas = _devices.Select(d => new ResNet(d, Config)).ToArray();
            _optimizer = new SgdOptimizer(_devices[0], Master.Store, options.Lr, options.Momentum, options.WeightDecay);
            _loss = new CrossEntropyLoss(_devices[0]);
            _batches = new BatchSource(_devices[0], TrainData, GlobalBatch);
            int b = options.BatchSize, image = TrainData.Channels * TrainData.Height * TrainData.Width;
            _inputs = _devices.Select(d => d.Allocate<float>((long)b * image)).ToArray();
            _labels = _devices.Select(d => d.Allocate<int>(b)).ToArray();
            _dlogits = _devices.Select(d => d.Allocate<float>((long)b * Config.Classes)).ToArray();
            _gathered = _devices[0].Allocate<float>((long)GlobalBatch * Config.Classes);
            _gradScratch = _devices[0].Allocate<float>(Math.Max(1, Master.Store.ParameterCount));
            InitialiseModel();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private ResNet Master => _replicas[0];
    public override ResNet Model => Master;
    protected override SgdOptimizer Optimizer => _optimizer;
    protected override IReadOnlyList<Device> Devices => _devices;
    public override string ModeName => "dp";
    public override bool Shared => _shared;
    public IReadOnlyList<ResNet> Replicas => _replicas;
    protected override int GlobalBatch => O.BatchSize * O.DeviceList().Length;
    protected override int PerStepIndices => GlobalBatch;
    protected override int StepsPerEpoch => TrainData.Count / GlobalBatch;

    protected override StepOutcome Step(int epoch, int step, ReadOnlySpan<int> indices, PhaseClock clock)
    {
        int n = _devices.Length, b = O.BatchSize, image = TrainData.Channels * TrainData.Height * TrainData.Width, classes = Config.Classes;
        var (x, labels) = _batches.Load(indices, O.Augment == "standard", Rng.For(O.Seed, epoch, step), clock);
        clock.Begin("scatter");

        // scatter: chunk r of the batch (and its labels) goes to device r.
        var inputs = new Tensor[n];
        for (int r = 0; r < n; r++)
        {
            ArrayView<float> dst = ((ArrayView<float>)_inputs[r].View).SubView(0, (long)b * image);
            _transfer.Copy(_devices[0], x.View.SubView((long)r * b * image, (long)b * image), _devices[r], dst);
            DeviceTransfer.CopyInts(_devices[0], labels.SubView(r * b, b), _devices[r], _labels[r].View);
            inputs[r] = new Tensor(dst, new[] { b, TrainData.Channels, TrainData.Height, TrainData.Width });
        }
        clock.Mark("scatter", (n - 1) * (long)b * (image * sizeof(float) + sizeof(int)));
        clock.Begin("replicate");

        Replicate();
        clock.Mark("replicate", (n - 1) * (Master.Store.ParameterCount + Master.Store.BufferCount) * sizeof(float));
        clock.Begin("forward");

        var logits = new Tensor[n];
        Parallel(clock, "forward", r => logits[r] = _replicas[r].Forward(inputs[r], training: true));
        clock.Mark("forward");
        clock.Begin("gather");

        ArrayView<float> gathered = ((ArrayView<float>)_gathered.View).SubView(0, (long)n * b * classes);
        for (int r = 0; r < n; r++)
        {
            _transfer.Copy(_devices[r], logits[r].View, _devices[0], gathered.SubView((long)r * b * classes, (long)b * classes));
        }
        clock.Mark("gather", (n - 1) * (long)b * classes * sizeof(float));
        clock.Begin("loss");

        _loss.Forward(new Tensor(gathered, new[] { n * b, classes }), labels);
        Tensor dlogits = _loss.Backward(1f / (n * b));
        clock.Mark("loss");
        clock.Begin("scatter");

        var douts = new Tensor[n];
        for (int r = 0; r < n; r++)
        {
            ArrayView<float> dst = ((ArrayView<float>)_dlogits[r].View).SubView(0, (long)b * classes);
            _transfer.Copy(_devices[0], dlogits.View.SubView((long)r * b * classes, (long)b * classes), _devices[r], dst);
            douts[r] = new Tensor(dst, new[] { b, classes });
        }
        clock.Mark("scatter", (n - 1) * (long)b * classes * sizeof(float));
        clock.Begin("backward");

        Parallel(clock, "backward", r => _replicas[r].Backward(douts[r]));
        clock.Mark("backward");
        clock.Begin("grad_sync");

        ReduceGradients();
        clock.Mark("grad_sync", (n - 1) * Master.Store.ParameterCount * sizeof(float));
        clock.Begin("optimizer");

        _optimizer.Step();
        clock.Mark("optimizer");
        var (loss, correct) = _loss.Read();
        return new StepOutcome((double)loss * indices.Length, correct, indices.Length);
    }

    /// <summary>Device 0's parameters, BN buffers and counters become every replica's.</summary>
    private void Replicate()
    {
        ParameterStore master = Master.Store;
        if (_devices.Length == 1) return;
        if (_hostParams.Length != master.ParameterCount) _hostParams = new float[master.ParameterCount];
        if (_hostBuffers.Length != master.BufferCount) _hostBuffers = new float[master.BufferCount];
        master.Values.SubView(0, master.ParameterCount).CopyToCPU(_devices[0].Stream, _hostParams);
        master.BufferValues.SubView(0, master.BufferCount).CopyToCPU(_devices[0].Stream, _hostBuffers);
        _devices[0].Synchronize();
        for (int r = 1; r < _replicas.Length; r++)
        {
            ParameterStore s = _replicas[r].Store;
            s.UploadValues(_devices[r], _hostParams);
            s.UploadBuffers(_devices[r], _hostBuffers);
            foreach (var (mine, theirs) in master.Counters.Zip(s.Counters)) theirs.Count = mine.Count;
        }
    }

    /// <summary>Sum every replica's gradients into device 0's (the replicas' losses were scaled by the global batch).</summary>
    private void ReduceGradients()
    {
        ParameterStore master = Master.Store;
        ArrayView<float> scratch = ((ArrayView<float>)_gradScratch.View).SubView(0, master.ParameterCount);
        for (int r = 1; r < _replicas.Length; r++)
        {
            _transfer.Copy(_devices[r], _replicas[r].Store.Grads.SubView(0, master.ParameterCount), _devices[0], scratch);
            Elementwise.Accumulate(_devices[0], master.Grads.SubView(0, master.ParameterCount), scratch);
        }
    }

    /// <summary>Runs <paramref name="work"/> for every replica: one host thread each, or all from this thread with --dp-serial-dispatch.</summary>
    private void Parallel(PhaseClock clock, string phase, Action<int> work)
    {
        void Run(int r)
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            work(r);
            if (clock.Trace is null) return;
            _devices[r].Synchronize();
            clock.Trace.Slice($"{phase} replica {r}", "replica", $"device {r}", start, System.Diagnostics.Stopwatch.GetTimestamp());
        }
        if (O.DpSerialDispatch || _devices.Length == 1)
        {
            for (int r = 0; r < _devices.Length; r++) Run(r);
            return;
        }
        var threads = new Task[_devices.Length];
        for (int r = 0; r < threads.Length; r++)
        {
            int replica = r;
            threads[r] = Task.Factory.StartNew(() => Run(replica), TaskCreationOptions.LongRunning);
        }
        Task.WaitAll(threads);
    }

    protected override string TraceTrack => "device 0 (host thread of the step)";

    protected override double? Evaluate() => EvaluateOn(_devices[0], Master, _loss);

    public override void Dispose()
    {
        _batches?.Dispose();
        _loss?.Dispose();
        _optimizer?.Dispose();
        foreach (var b in _inputs ?? Array.Empty<MemoryBuffer1D<float, Stride1D.Dense>>()) b?.Dispose();
        foreach (var b in _dlogits ?? Array.Empty<MemoryBuffer1D<float, Stride1D.Dense>>()) b?.Dispose();
        foreach (var b in _labels ?? Array.Empty<MemoryBuffer1D<int, Stride1D.Dense>>()) b?.Dispose();
        _gathered?.Dispose();
        _gradScratch?.Dispose();
        foreach (var m in _replicas ?? Array.Empty<ResNet>()) m?.Dispose();
        foreach (var d in _devices ?? Array.Empty<Device>()) d?.Dispose();
        _context?.Dispose();
    }
}
