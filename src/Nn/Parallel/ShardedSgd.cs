using Engine.Comm;
using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Parallel;

/// <summary>
/// This rank's piece of one store segment: <see cref="Length"/> elements from flat offset
/// <see cref="FlatOffset"/>, whose parameters and gradients this rank updates (views into the full flat buffers
/// under ZeRO-1, into shard buffers under ZeRO-2 and FSDP) and whose momentum lives at <see cref="ShardOffset"/>.
/// </summary>
public sealed record ShardPiece(StoreSegment Segment, long FlatOffset, long ShardOffset, long Length, ArrayView<float> Values, ArrayView<float> Grads);

/// <summary>
/// SGD with momentum over this rank's pieces only (ZeRO's optimizer-state partitioning): each rank keeps
/// momentum for 1/N of the parameters and updates only those; the caller then all-gathers the parameters.
/// The update is the same kernel as <see cref="SgdOptimizer"/>'s, element by element, so a sharded run's
/// parameters equal the unsharded run's whenever their gradients do.
/// </summary>
public sealed class ShardedSgd : IOptimizer
{
    private readonly Device _device;
    private readonly ICommunicator _comm;
    private readonly ParameterStore _store;
    private readonly IReadOnlyList<ShardPiece> _pieces;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _momentum;

    public ShardedSgd(Device device, ICommunicator comm, ParameterStore store, IReadOnlyList<ShardPiece> pieces, float lr, float momentum, float weightDecay)
    {
        SgdOptimizer.CheckHyperparameters(lr, momentum, weightDecay);
        _device = device;
        _comm = comm;
        _store = store;
        _pieces = pieces;
        LearningRate = lr;
        Momentum = momentum;
        WeightDecay = weightDecay;
        ShardLength = pieces.Sum(p => p.Length);
        _momentum = device.Allocate<float>(Math.Max(1, ShardLength), MemoryUse.OptimizerState);
        Elementwise.Fill(device, _momentum.View, 0f);
    }

    public float LearningRate { get; set; }
    public float Momentum { get; }
    public float WeightDecay { get; }
    public long Steps { get; set; }

    /// <summary>Elements of momentum this rank holds: about 1/N of the model's.</summary>
    public long ShardLength { get; }

    private ArrayView<float> MomentumOf(ShardPiece p) => ((ArrayView<float>)_momentum.View).SubView(p.ShardOffset, p.Length);

    public void Step()
    {
        foreach (ShardPiece p in _pieces)
        {
            Sgd.Step(_device, p.Values, p.Grads, MomentumOf(p), LearningRate, Momentum, WeightDecay, Steps == 0);
        }
        Steps++;
    }

    /// <summary>Every rank's momentum pieces, all-gathered segment by segment into the flat layout. Collective: every rank calls it.</summary>
    public float[] DownloadMomentum()
    {
        var flat = new float[_store.FlatLength];
        int n = _comm.WorldSize;
        long longest = _pieces.Count == 0 ? 1 : _pieces.Max(p => p.Segment.PaddedLength);
        using var gathered = _device.Allocate<float>(Math.Max(1, longest), MemoryUse.Communication);
        foreach (ShardPiece p in _pieces)
        {
            ArrayView<float> all = ((ArrayView<float>)gathered.View).SubView(0, p.Length * n);
            _comm.AllGather(MomentumOf(p), all).Wait();
            _device.Download(all).CopyTo(flat.AsSpan((int)p.Segment.Offset));
        }
        return flat;
    }

    public void UploadMomentum(ReadOnlySpan<float> flat)
    {
        if (flat.Length != _store.FlatLength) throw new ArgumentException($"Expected {_store.FlatLength} momentum values, got {flat.Length}.");
        foreach (ShardPiece p in _pieces)
        {
            // The last piece of a segment may reach into the padding, which the flat layout holds as zeros.
            MomentumOf(p).CopyFromCPU(_device.Stream, flat.Slice((int)p.FlatOffset, (int)p.Length));
        }
        _device.Synchronize();
    }

    public void Dispose() => _momentum.Dispose();
}
