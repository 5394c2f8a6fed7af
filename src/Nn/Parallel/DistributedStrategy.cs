using Engine.Comm;
using Engine.Kernels;
using ILGPU;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Parallel;

/// <summary>The knobs every multi-process strategy takes: DDP's bucket cap and overlap, and SGD's settings.</summary>
public sealed record DistributedSettings(double BucketMb = 25, bool Overlap = true, float Lr = 0.1f, float Momentum = 0.9f, float WeightDecay = 5e-4f,
    GradientCompression Compression = GradientCompression.None);

/// <summary>
/// One rank's side of a multi-process data-parallel algorithm (DDP, ZeRO-1, ZeRO-2, FSDP) over a communicator:
/// how the model's flat buffers are laid out and sharded, what happens to gradients after backward, how the
/// optimizer steps, and which collectives that costs. The training loop is the same for all of them:
/// <code>
/// var model = new ResNet(device, config, strategy.Layout);
/// strategy.Attach(model);                         // reducer, optimizer, hooks
/// forward; strategy.AfterForward(clock); loss;
/// strategy.Backward(dlogits, clock, sync);        // + gradient collectives
/// strategy.Step(clock);                           // optimizer (+ parameter all-gather)
/// </code>
/// A new strategy is one subclass here and one entry in the runner's mode table.
/// </summary>
public abstract class DistributedStrategy : IDisposable
{
    private ResNet? _model;

    protected DistributedStrategy(ICommunicator comm, Device device, DistributedSettings settings)
    {
        Comm = comm;
        Device = device;
        Settings = settings;
    }

    public ICommunicator Comm { get; }
    public Device Device { get; }

    /// <summary>The trace track the strategy's collectives are drawn on.</summary>
    public string CommTrack { get; set; } = "collectives";
    public DistributedSettings Settings { get; }
    protected int Ranks => Comm.WorldSize;
    protected int Rank => Comm.Rank;

    public ResNet Model => _model ?? throw new InvalidOperationException("Attach the model first.");
    public ParameterStore Store => Model.Store;

    /// <summary>The store layout this strategy needs (passed to the model's constructor).</summary>
    public abstract StoreLayout Layout(IReadOnlyList<Parameter> flatOrder);

    public abstract IOptimizer Optimizer { get; }

    /// <summary>Gradient buckets (DDP, ZeRO) or units (FSDP) the flat buffers are cut into.</summary>
    public int Segments => Store.Segments.Count;

    /// <summary>Sets up the reducer, the optimizer and any hooks on <paramref name="model"/>, whose store was built with <see cref="Layout"/>.</summary>
    public void Attach(ResNet model)
    {
        if (_model is not null) throw new InvalidOperationException("A strategy drives one model.");
        _model = model;
        OnAttach();
    }

    protected abstract void OnAttach();

    /// <summary>DDP's constructor: every rank takes rank 0's parameters and buffers.</summary>
    public virtual void BroadcastInitialState()
    {
        using (GatherFullParameters(writeBack: true))
        {
            Comm.Broadcast(Store.Values.SubView(0, Store.FlatLength), 0).Wait();
        }
        Comm.Broadcast(Store.BufferValues.SubView(0, Store.BufferCount), 0).Wait();
    }

    /// <summary>
    /// While the scope lasts, the full flat parameter buffer is held and current on every rank (FSDP's
    /// <c>summon_full_params</c>; the others always hold it). With <paramref name="writeBack"/>, what is written
    /// into it (a loaded checkpoint, a broadcast) becomes the rank's shard when the scope ends. Collective.
    /// </summary>
    public virtual IDisposable GatherFullParameters(bool writeBack) => NoScope.Instance;

    /// <summary>After the forward phase: strategies that communicate inside forward (FSDP's all-gathers) account for it.</summary>
    public virtual void AfterForward(PhaseClock clock)
    {
    }

    /// <summary>
    /// Backward with this strategy's gradient synchronisation. <paramref name="sync"/> false is DDP's <c>no_sync</c>
    /// (gradient accumulation): gradients stay local and are added to the next synchronising backward's.
    /// </summary>
    public abstract void Backward(Tensor dlogits, PhaseClock clock, bool sync);

    /// <summary>The optimizer step, and whatever brings the updated parameters to every rank.</summary>
    public abstract void Step(PhaseClock clock);

    /// <summary>Bytes each rank sends per step for the gradient and parameter collectives (ring algorithms).</summary>
    public abstract long BytesPerStep { get; }

    /// <summary>(N-1)/N of <paramref name="elements"/> floats: what one rank sends in a ring reduce-scatter or all-gather of them.</summary>
    protected long RingShareBytes(long elements) => RingShare(Ranks, elements * sizeof(float));

    /// <summary>(N-1)/N of <paramref name="bytes"/>: what one of <paramref name="ranks"/> sends in a ring reduce-scatter or all-gather (the scaling model counts with it too).</summary>
    public static long RingShare(int ranks, long bytes) => ranks <= 1 ? 0 : (ranks - 1) * bytes / ranks;

    /// <summary>What one rank sends in the bucketed all-reduce of the whole gradient, at the compression hook's bytes per element.</summary>
    protected long AllReduceBytes => 2 * RingShareBytes(Store.FlatLength) * CompressionHook.BytesPerElement(Settings.Compression) / sizeof(float);

    public virtual void Dispose()
    {
        Optimizer?.Dispose();
    }

    /// <summary>This rank's pieces of every segment, in segment order, with their momentum offsets.</summary>
    protected List<ShardPiece> Pieces(Func<StoreSegment, long, ArrayView<float>> values, Func<StoreSegment, long, ArrayView<float>> grads)
    {
        var pieces = new List<ShardPiece>();
        long shard = 0;
        foreach (StoreSegment s in Store.Segments)
        {
            long length = s.PieceLength(Ranks);
            pieces.Add(new ShardPiece(s, s.PieceOffset(Rank, Ranks), shard, length, values(s, shard), grads(s, shard)));
            shard += length;
        }
        return pieces;
    }

    private sealed class NoScope : IDisposable
    {
        public static readonly NoScope Instance = new();

        public void Dispose()
        {
        }
    }
}

/// <summary>
/// DistributedDataParallel: every rank holds the whole model, gradients are averaged by all-reduce in buckets that
/// overlap backward (<see cref="DdpReducer"/>), and every rank steps its own SGD. Per parameter: 4 bytes of
/// parameters, 4 of gradients, 4 of momentum.
/// </summary>
public sealed class DistributedDataParallel(ICommunicator comm, Device device, DistributedSettings settings, CommHook? hook = null)
    : DistributedStrategy(comm, device, settings)
{
    private SgdOptimizer? _optimizer;
    private CompressionHook? _compression;

    public DdpReducer Reducer { get; private set; } = null!;

    public override IOptimizer Optimizer => _optimizer!;

    public override StoreLayout Layout(IReadOnlyList<Parameter> flatOrder) => new(BucketPlan.SegmentSizes(flatOrder, Settings.BucketMb));

    protected override void OnAttach()
    {
        Reducer = new DdpReducer(Comm, Device, Store, Settings.Overlap, hook ?? CompressionHook.For(Settings.Compression, Device, out _compression));
        Model.GradientReady += Reducer.MarkReady;
        _optimizer = new SgdOptimizer(Device, Store, Settings.Lr, Settings.Momentum, Settings.WeightDecay);
    }

    /// <summary>The ring all-reduce's share, at the compression hook's bytes per element.</summary>
    public override long BytesPerStep => AllReduceBytes;

    public override void Backward(Tensor dlogits, PhaseClock clock, bool sync)
    {
        using (clock.Phase("backward"))
        {
            Reducer.Prepare(sync);
            Model.Backward(dlogits);
            if (!sync) Reducer.Finish();
        }
        if (!sync) return;
        using (clock.Phase("grad_sync", BytesPerStep)) Reducer.Finish();
        clock.AddHidden("grad_sync", Reducer.HiddenSeconds());
        Reducer.TraceBuckets(clock.Trace, CommTrack);
    }

    public override void Step(PhaseClock clock)
    {
        using (clock.Phase("optimizer")) _optimizer!.Step();
    }

    public override void Dispose()
    {
        Reducer?.Dispose();
        _compression?.Dispose();
        base.Dispose();
    }
}
