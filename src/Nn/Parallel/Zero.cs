using Engine.Comm;
using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Parallel;

/// <summary>
/// ZeRO stages 1 and 2 (Rajbhandari et al., 2020) over DDP's buckets. Each bucket is padded to a multiple of the
/// world size and rank r owns piece r of every bucket: it keeps momentum only for its pieces and updates only their
/// parameters; then every bucket's parameters are all-gathered in place, so each rank again holds the whole model.
/// <list type="bullet">
/// <item>Stage 1 (<c>zero1</c>): gradients are all-reduced in buckets exactly as DDP does. Per parameter:
/// 4 + 4 + 4/N bytes.</item>
/// <item>Stage 2 (<c>zero2</c>): each bucket is reduce-scattered into the owners' gradient shards as soon as backward
/// fills it, so no full gradient buffer exists (a few bucket buffers do, counted as communication). Per parameter:
/// 4 + 4/N + 4/N bytes. Bytes moved per step are DDP's: a reduce-scatter and an all-gather are one all-reduce.</item>
/// </list>
/// </summary>
public sealed class Zero(int stage, ICommunicator comm, Device device, DistributedSettings settings) : DistributedStrategy(comm, device, settings)
{
    private MemoryBuffer1D<float, Stride1D.Dense>? _gradShard;
    private ShardedSgd? _optimizer;
    private List<ShardPiece> _pieces = new();
    private readonly List<CommWork> _gathers = new();
    private CompressionHook? _compression;

    public int Stage { get; } = stage is 1 or 2 ? stage : throw new ArgumentOutOfRangeException(nameof(stage), stage, "ZeRO stage must be 1 or 2 (stage 3 is FSDP).");

    public DdpReducer Reducer { get; private set; } = null!;

    public override IOptimizer Optimizer => _optimizer!;

    public override StoreLayout Layout(IReadOnlyList<Parameter> flatOrder)
        => new(BucketPlan.SegmentSizes(flatOrder, Settings.BucketMb), Align: Ranks, HoldGrads: Stage == 1);

    protected override void OnAttach()
    {
        if (Stage == 2)
        {
            if (!Settings.Overlap) throw new ArgumentException("zero2 reduce-scatters each bucket as backward fills it and keeps no full gradient buffer: --no-overlap applies to ddp and zero1 only.");
            long shard = Store.Segments.Sum(s => s.PieceLength(Ranks));
            _gradShard = Device.Allocate<float>(Math.Max(1, shard), MemoryUse.Gradients);
            Elementwise.Fill(Device, _gradShard.View, 0f);
        }
        _pieces = Pieces((s, _) => Store.Values.SubView(s.PieceOffset(Rank, Ranks), s.PieceLength(Ranks)),
            (s, shard) => Stage == 1 ? Store.Grads.SubView(s.PieceOffset(Rank, Ranks), s.PieceLength(Ranks)) : GradShard.SubView(shard, s.PieceLength(Ranks)));
        if (Stage == 2 && Settings.Compression != GradientCompression.None) throw new ArgumentException("zero2 reduce-scatters its buckets; the fp16 and bf16 compression hooks apply to ddp and zero1, whose buckets are all-reduced.");
        Reducer = new DdpReducer(Comm, Device, Store, Settings.Overlap, Stage == 1 ? CompressionHook.For(Settings.Compression, Device, out _compression) : ReduceScatterHook);
        Model.GradientReady += Reducer.MarkReady;
        _optimizer = new ShardedSgd(Device, Comm, Store, _pieces, Settings.Lr, Settings.Momentum, Settings.WeightDecay);
    }

    private ArrayView<float> GradShard => ((ArrayView<float>)_gradShard!.View).SubView(0, _gradShard.Length);

    /// <summary>ZeRO-2's hook: the bucket's mean over ranks, piece r to rank r's gradient shard.</summary>
    private CommWork ReduceScatterHook(ICommunicator comm, GradBucket bucket)
    {
        ShardPiece mine = _pieces[bucket.Index];
        return comm.ReduceScatter(bucket.Grads, mine.Grads, ReduceOp.Avg);
    }

    private string GradPhase => Stage == 1 ? "grad_sync" : "reduce_scatter";

    private long GradBytes => Stage == 1 ? AllReduceBytes : RingShareBytes(Store.FlatLength);

    public override long BytesPerStep => GradBytes + RingShareBytes(Store.FlatLength);

    public override void Backward(Tensor dlogits, PhaseClock clock, bool sync)
    {
        using (clock.Phase("backward"))
        {
            Reducer.Prepare(sync);
            Model.Backward(dlogits);
            if (!sync) Reducer.Finish();
        }
        if (!sync) return;
        using (clock.Phase(GradPhase, GradBytes)) Reducer.Finish();
        clock.AddHidden(GradPhase, Reducer.HiddenSeconds());
        Reducer.TraceBuckets(clock.Trace, CommTrack);
    }

    public override void Step(PhaseClock clock)
    {
        using (clock.Phase("optimizer")) _optimizer!.Step();
        using (clock.Phase("all_gather", RingShareBytes(Store.FlatLength)))
        {
            _gathers.Clear();
            foreach (ShardPiece p in _pieces)
            {
                _gathers.Add(Comm.AllGather(p.Values, Store.Values.SubView(p.Segment.Offset, p.Segment.PaddedLength)));
            }
            CommWork.WaitAll(_gathers);
        }
        if (clock.Trace is { } trace)
        {
            foreach (CommWork w in _gathers) trace.Slice("all_gather parameters", "comm", CommTrack, w.StartedTimestamp, w.CompletedTimestamp);
        }
    }

    public override void Dispose()
    {
        Reducer?.Dispose();
        _compression?.Dispose();
        _gradShard?.Dispose();
        base.Dispose();
    }
}
