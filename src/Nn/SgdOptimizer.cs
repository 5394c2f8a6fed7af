using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn;

/// <summary>What the training loop and checkpoints need of an optimizer, whether it holds all of its state or a shard.</summary>
public interface IOptimizer : IDisposable
{
    float LearningRate { get; set; }

    /// <summary>Optimizer steps taken (PyTorch's first-step rule depends on it; checkpoints keep it).</summary>
    long Steps { get; set; }

    void Step();

    /// <summary>The momentum in the store's flat layout (<see cref="ParameterStore.FlatLength"/> values). Sharded optimizers gather it: every rank must call.</summary>
    float[] DownloadMomentum();

    /// <summary>Sets the momentum from the flat layout; a sharded optimizer keeps its own pieces.</summary>
    void UploadMomentum(ReadOnlySpan<float> flat);
}

/// <summary>
/// torch.optim.SGD(lr, momentum, weight_decay) over the whole flat parameter buffer in one launch.
/// Its momentum buffer is laid out like the parameters; <see cref="Steps"/> decides PyTorch's first-step rule (buf = d).
/// </summary>
public sealed class SgdOptimizer : IOptimizer
{
    private readonly Device _device;
    private readonly ParameterStore _store;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _momentum;

    public SgdOptimizer(Device device, ParameterStore store, float lr, float momentum, float weightDecay)
    {
        CheckHyperparameters(lr, momentum, weightDecay);
        _device = device;
        _store = store;
        LearningRate = lr;
        Momentum = momentum;
        WeightDecay = weightDecay;
        _momentum = device.Allocate<float>(Math.Max(1, store.FlatLength), MemoryUse.OptimizerState);
        Elementwise.Fill(device, _momentum.View, 0f);
    }

    /// <summary>The checks every SGD makes on its settings (this one and the sharded ones).</summary>
    public static void CheckHyperparameters(float lr, float momentum, float weightDecay)
    {
        if (!(lr > 0) || float.IsInfinity(lr)) throw new ArgumentException($"Learning rate must be positive and finite, got {lr}.");
        if (momentum < 0 || momentum >= 1) throw new ArgumentException($"Momentum must be in [0, 1), got {momentum}.");
        if (weightDecay < 0) throw new ArgumentException($"Weight decay must be non-negative, got {weightDecay}.");
    }

    public float LearningRate { get; set; }
    public float Momentum { get; }
    public float WeightDecay { get; }
    public long Steps { get; set; }

    public ArrayView<float> MomentumBuffer => ((ArrayView<float>)_momentum.View).SubView(0, _store.FlatLength);

    public void Step()
    {
        Sgd.Step(_device, _store.Values.SubView(0, _store.FlatLength), _store.Grads.SubView(0, _store.FlatLength), MomentumBuffer,
            LearningRate, Momentum, WeightDecay, Steps == 0);
        Steps++;
    }

    public float[] DownloadMomentum() => _device.Download(MomentumBuffer);

    public void UploadMomentum(ReadOnlySpan<float> values)
    {
        if (values.Length != _store.FlatLength) throw new ArgumentException($"Expected {_store.FlatLength} momentum values, got {values.Length}.");
        if (values.Length > 0) MomentumBuffer.CopyFromCPU(_device.Stream, values);
        _device.Synchronize();
    }

    public void Dispose() => _momentum.Dispose();
}
