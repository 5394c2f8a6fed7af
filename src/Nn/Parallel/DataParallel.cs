using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Parallel;

/// <summary>
/// torch.nn.DataParallel: one process drives N devices, with device 0 as the master. Its forward is PyTorch's, four
/// named steps (<see cref="Scatter"/>, <see cref="Replicate"/>, <see cref="ParallelApply"/>, <see cref="Gather"/>),
/// and its backward reverses them: the output gradient is scattered, every replica runs backward, and the gradients
/// are reduce-added onto device 0 (<see cref="ReduceAddGradients"/>), where the one optimizer steps. BN running
/// statistics survive only from device 0's replica (the next replicate overwrites the others).
/// </summary>
public sealed class DataParallel : IDisposable
{
    private readonly Device[] _devices;
    private readonly ResNet[] _replicas;
    private readonly DeviceTransfer _transfer = new();
    private readonly MemoryBuffer1D<float, Stride1D.Dense>[] _inputs, _douts;
    private readonly MemoryBuffer1D<int, Stride1D.Dense>[] _labels;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _gathered, _gradScratch;
    private float[] _hostParams = Array.Empty<float>(), _hostBuffers = Array.Empty<float>();

    /// <param name="chunk">Samples per replica; <paramref name="sample"/> the shape of one input sample (C, H, W).</param>
    public DataParallel(IReadOnlyList<Device> devices, ResNetConfig config, int chunk, int[] sample)
    {
        _devices = devices.ToArray();
        Chunk = chunk;
        Sample = sample;
        _replicas = _devices.Select(d => new ResNet(d, config)).ToArray();
        long image = Tensor.ShapeLength(sample);
        _inputs = _devices.Select(d => d.Allocate<float>(chunk * image)).ToArray();
        _labels = _devices.Select(d => d.Allocate<int>(chunk)).ToArray();
        _douts = _devices.Select(d => d.Allocate<float>((long)chunk * config.Classes)).ToArray();
        _gathered = _devices[0].Allocate<float>((long)_devices.Length * chunk * config.Classes);
        _gradScratch = _devices[0].Allocate<float>(Math.Max(1, Master.Store.FlatLength), MemoryUse.Communication);
    }

    public IReadOnlyList<Device> Devices => _devices;
    public IReadOnlyList<ResNet> Replicas => _replicas;
    public ResNet Master => _replicas[0];
    public int Chunk { get; }
    public int[] Sample { get; }
    private int Classes => Master.Config.Classes;

    /// <summary>Bytes a step's <see cref="Replicate"/> moves: parameters and buffers to every other device.</summary>
    public long ReplicateBytes => (_devices.Length - 1) * (Master.Store.FlatLength + Master.Store.BufferCount) * sizeof(float);

    /// <summary>Bytes <see cref="ReduceAddGradients"/> moves: every other device's gradients to device 0.</summary>
    public long ReduceBytes => (_devices.Length - 1) * Master.Store.FlatLength * sizeof(float);

    /// <summary>Chunk r of the batch on device 0 (and of its labels) goes to device r. Returns the replicas' inputs.</summary>
    public Tensor[] Scatter(Tensor batch, ArrayView<int> labels)
    {
        long image = Tensor.ShapeLength(Sample);
        var inputs = new Tensor[_devices.Length];
        for (int r = 0; r < _devices.Length; r++)
        {
            ArrayView<float> dst = ((ArrayView<float>)_inputs[r].View).SubView(0, Chunk * image);
            _transfer.Copy(_devices[0], batch.View.SubView(r * Chunk * image, Chunk * image), _devices[r], dst);
            DeviceTransfer.CopyInts(_devices[0], labels.SubView(r * Chunk, Chunk), _devices[r], _labels[r].View);
            inputs[r] = new Tensor(dst, new[] { Chunk }.Concat(Sample).ToArray());
        }
        return inputs;
    }

    /// <summary>Bytes <see cref="Scatter"/> moves off device 0 for a batch.</summary>
    public long ScatterBytes => (_devices.Length - 1) * Chunk * (Tensor.ShapeLength(Sample) * sizeof(float) + sizeof(int));

    /// <summary>Device 0's parameters, BN buffers and counters become every replica's.</summary>
    public void Replicate()
    {
        ParameterStore master = Master.Store;
        if (_devices.Length == 1) return;
        if (_hostParams.Length != master.FlatLength) _hostParams = new float[master.FlatLength];
        if (_hostBuffers.Length != master.BufferCount) _hostBuffers = new float[master.BufferCount];
        master.Values.SubView(0, master.FlatLength).CopyToCPU(_devices[0].Stream, _hostParams);
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

    /// <summary>Runs <paramref name="work"/> for every replica: one host thread each, or all from this thread when <paramref name="serial"/> (Python's GIL).</summary>
    public void ParallelApply(Action<int> work, bool serial)
    {
        if (serial || _devices.Length == 1)
        {
            for (int r = 0; r < _devices.Length; r++) work(r);
            return;
        }
        var threads = new Task[_devices.Length];
        for (int r = 0; r < threads.Length; r++)
        {
            int replica = r;
            threads[r] = Task.Factory.StartNew(() => work(replica), TaskCreationOptions.LongRunning);
        }
        Task.WaitAll(threads);
    }

    /// <summary>Every replica's outputs, concatenated on device 0 in replica order.</summary>
    public Tensor Gather(IReadOnlyList<Tensor> outputs)
    {
        ArrayView<float> gathered = ((ArrayView<float>)_gathered.View).SubView(0, (long)_devices.Length * Chunk * Classes);
        for (int r = 0; r < _devices.Length; r++)
        {
            _transfer.Copy(_devices[r], outputs[r].View, _devices[0], gathered.SubView((long)r * Chunk * Classes, (long)Chunk * Classes));
        }
        return new Tensor(gathered, new[] { _devices.Length * Chunk, Classes });
    }

    /// <summary>Bytes <see cref="Gather"/> (or the output gradient's scatter) moves.</summary>
    public long OutputBytes => (_devices.Length - 1) * (long)Chunk * Classes * sizeof(float);

    /// <summary>The output gradient on device 0, chunk r to device r (backward's scatter).</summary>
    public Tensor[] ScatterGradient(Tensor dlogits)
    {
        var douts = new Tensor[_devices.Length];
        for (int r = 0; r < _devices.Length; r++)
        {
            ArrayView<float> dst = ((ArrayView<float>)_douts[r].View).SubView(0, (long)Chunk * Classes);
            _transfer.Copy(_devices[0], dlogits.View.SubView((long)r * Chunk * Classes, (long)Chunk * Classes), _devices[r], dst);
            douts[r] = new Tensor(dst, new[] { Chunk, Classes });
        }
        return douts;
    }

    /// <summary>Sums every replica's gradients into device 0's (the replicas' losses were scaled by the global batch).</summary>
    public void ReduceAddGradients()
    {
        ParameterStore master = Master.Store;
        ArrayView<float> scratch = ((ArrayView<float>)_gradScratch.View).SubView(0, master.FlatLength);
        for (int r = 1; r < _replicas.Length; r++)
        {
            _transfer.Copy(_devices[r], _replicas[r].Store.Grads.SubView(0, master.FlatLength), _devices[0], scratch);
            Elementwise.Accumulate(_devices[0], master.Grads.SubView(0, master.FlatLength), scratch);
        }
    }

    public void Dispose()
    {
        foreach (var b in _inputs) b.Dispose();
        foreach (var b in _douts) b.Dispose();
        foreach (var b in _labels) b.Dispose();
        _gathered.Dispose();
        _gradScratch.Dispose();
        foreach (var m in _replicas) m.Dispose();
    }
}
