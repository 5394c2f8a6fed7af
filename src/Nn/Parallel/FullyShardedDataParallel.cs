using System.Diagnostics;
using Engine.Comm;
using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Parallel;

/// <summary>
/// FullyShardedDataParallel (ZeRO-3): parameters, gradients and momentum are all sharded; rank r keeps piece r of
/// every unit, 12/N bytes per parameter. A unit is what FSDP's auto-wrap policy with
/// <c>ModuleWrapPolicy({BasicBlock})</c> makes of a ResNet: one unit per BasicBlock, and the root's own parameters,
/// which here form two units (the stem's conv1 and bn1, and the head's fc) so that every unit is contiguous in the
/// flat layout. Around each unit's forward and backward (the model's module hooks):
/// <list type="number">
/// <item>before it runs, its parameters are all-gathered into a pooled buffer (waiting only if the prefetch has not
/// finished) and the next unit's all-gather is issued, so it overlaps this unit's compute;</item>
/// <item>after its forward, the gathered buffer is freed (<c>reshard_after_forward</c>): backward gathers again;</item>
/// <item>after its backward, its gradients (written into a pooled buffer) are reduce-scattered, averaged, into the
/// ranks' gradient shards, overlapping the rest of backward.</item>
/// </list>
/// Bytes moved per step: two all-gathers and one reduce-scatter of the model, 1.5x DDP's all-reduce.
/// </summary>
public sealed class FullyShardedDataParallel(ICommunicator comm, Device device, DistributedSettings settings) : DistributedStrategy(comm, device, settings)
{
    private const int ParameterSlots = 2, GradientSlots = 2;
    private MemoryBuffer1D<float, Stride1D.Dense>? _valueShard, _gradShard;
    private ShardedSgd? _optimizer;
    private List<ShardPiece> _pieces = new();
    private BufferPool? _valuePool, _gradPool;
    private Unit[] _units = Array.Empty<Unit>();
    private readonly Dictionary<string, Unit> _unitOfModule = new();
    private readonly List<CommWork> _forwardGathers = new(), _backwardGathers = new(), _reduceScatters = new();
    private double _exposedForward, _exposedBackward;
    private long _backwardStart;
    private bool _full;

    private sealed class Unit(int index, string name, StoreSegment segment, IReadOnlyList<Parameter> parameters)
    {
        public int Index { get; } = index;
        public string Name { get; } = name;
        public StoreSegment Segment { get; } = segment;
        public IReadOnlyList<Parameter> Parameters { get; } = parameters;
        public MemoryBuffer1D<float, Stride1D.Dense>? Values, Grads;
        public CommWork? Gather;
    }

    public override IOptimizer Optimizer => _optimizer!;

    /// <summary>The FSDP unit a state entry or module belongs to: "stem", "layerK.B" (a BasicBlock) or "head"; null for modules without parameters.</summary>
    public static string? UnitOf(string name)
    {
        string first = name.Split('.')[0];
        if (first.StartsWith("layer", StringComparison.Ordinal))
        {
            string[] parts = name.Split('.');
            return parts.Length >= 2 ? $"{parts[0]}.{parts[1]}" : null;
        }
        return first switch
        {
            "conv1" or "bn1" => "stem",
            "fc" => "head",
            _ => null,
        };
    }

    /// <summary>Segments are units: runs of consecutive parameters (in flat order) of the same unit.</summary>
    public override StoreLayout Layout(IReadOnlyList<Parameter> flatOrder)
    {
        var sizes = new List<int>();
        var seen = new HashSet<string>();
        string? current = null;
        foreach (Parameter p in flatOrder)
        {
            string unit = UnitOf(p.Name) ?? throw new ArgumentException($"FSDP: parameter {p.Name} belongs to no unit.");
            if (unit == current)
            {
                sizes[^1]++;
                continue;
            }
            if (!seen.Add(unit)) throw new ArgumentException($"FSDP: unit {unit}'s parameters are not contiguous in the flat layout.");
            sizes.Add(1);
            current = unit;
        }
        return new StoreLayout(sizes, Align: Ranks, HoldValues: false, HoldGrads: false);
    }

    protected override void OnAttach()
    {
        long shard = Store.Segments.Sum(s => s.PieceLength(Ranks));
        _valueShard = Device.Allocate<float>(Math.Max(1, shard), MemoryUse.Parameters);
        _gradShard = Device.Allocate<float>(Math.Max(1, shard), MemoryUse.Gradients);
        Elementwise.Fill(Device, _valueShard.View, 0f);
        Elementwise.Fill(Device, _gradShard.View, 0f);
        _pieces = Pieces((s, at) => ((ArrayView<float>)_valueShard.View).SubView(at, s.PieceLength(Ranks)),
            (s, at) => ((ArrayView<float>)_gradShard.View).SubView(at, s.PieceLength(Ranks)));
        _units = Store.Segments.Select(s =>
        {
            var members = Store.FlatOrder.Skip(s.FirstParameter).Take(s.Parameters).ToList();
            return new Unit(s.Index, UnitOf(members[0].Name)!, s, members);
        }).ToArray();
        foreach (Unit u in _units) _unitOfModule[u.Name] = u;
        long longest = Store.Segments.Max(s => s.PaddedLength);
        _valuePool = new BufferPool(Device, longest, ParameterSlots + 1, MemoryUse.Communication);
        _gradPool = new BufferPool(Device, longest, GradientSlots, MemoryUse.Communication);
        _optimizer = new ShardedSgd(Device, Comm, Store, _pieces, Settings.Lr, Settings.Momentum, Settings.WeightDecay);
        Model.BeforeModule += Before;
        Model.AfterModule += After;
    }

    /// <summary>Units in forward order (the flat layout is backward's order).</summary>
    public IReadOnlyList<string> ForwardUnits => _units.Reverse().Select(u => u.Name).ToList();

    private Unit? UnitOfModule(Module m) => UnitOf(m.Name) is string name && _unitOfModule.TryGetValue(name, out Unit? u) ? u : null;

    /// <summary>The unit that runs after <paramref name="u"/>: forward goes stem -> head (down the flat layout's indices), backward back.</summary>
    private Unit? Next(Unit u, bool backward)
    {
        int i = backward ? u.Index + 1 : u.Index - 1;
        return i >= 0 && i < _units.Length ? _units[i] : null;
    }

    private static bool FirstOfUnit(Module m, Unit u, bool backward) => u.Name != "stem" || m.Name == (backward ? "bn1" : "conv1");
    private static bool LastOfUnit(Module m, Unit u, bool backward) => u.Name != "stem" || m.Name == (backward ? "conv1" : "bn1");

    private void Before(Module m, bool backward)
    {
        if (_full || UnitOfModule(m) is not Unit u || !FirstOfUnit(m, u, backward)) return;
        IssueGather(u, backward);
        var watch = Stopwatch.StartNew();
        u.Gather!.Wait();
        if (backward) _exposedBackward += watch.Elapsed.TotalSeconds;
        else _exposedForward += watch.Elapsed.TotalSeconds;
        if (Next(u, backward) is Unit next) IssueGather(next, backward);
        if (backward)
        {
            u.Grads = _gradPool!.Take();
            ArrayView<float> grads = ((ArrayView<float>)u.Grads.View).SubView(0, u.Segment.PaddedLength);
            if (u.Segment.PaddedLength > u.Segment.Length)
            {
                Elementwise.Fill(Device, grads.SubView(u.Segment.Length, u.Segment.PaddedLength - u.Segment.Length), 0f);
            }
            Store.Point(u.Parameters, grads, u.Segment.Offset, values: false);
        }
    }

    private void IssueGather(Unit u, bool backward)
    {
        if (u.Values is not null) return;
        u.Values = _valuePool!.Take();
        ArrayView<float> full = ((ArrayView<float>)u.Values.View).SubView(0, u.Segment.PaddedLength);
        u.Gather = Comm.AllGather(_pieces[u.Index].Values, full);
        (backward ? _backwardGathers : _forwardGathers).Add(u.Gather);
        Store.Point(u.Parameters, full, u.Segment.Offset, values: true);
    }

    private void After(Module m, bool backward)
    {
        if (_full || UnitOfModule(m) is not Unit u || !LastOfUnit(m, u, backward)) return;
        if (backward)
        {
            ArrayView<float> grads = ((ArrayView<float>)u.Grads!.View).SubView(0, u.Segment.PaddedLength);
            CommWork rs = Comm.ReduceScatter(grads, _pieces[u.Index].Grads, ReduceOp.Avg);
            _reduceScatters.Add(rs);
            _gradPool!.Return(u.Grads, rs);
            u.Grads = null;
        }
        // Free the gathered parameters (reshard): the next collective into this buffer waits for the kernels issued so far.
        _valuePool!.Return(u.Values!, null);
        u.Values = null;
        u.Gather = null;
    }

    public override void AfterForward(PhaseClock clock)
    {
        clock.Reassign("forward", "all_gather", _exposedForward, RingShareBytes(_forwardGathers.Sum(w => w.Count * Ranks)));
        clock.AddHidden("all_gather", Math.Max(0, Duration(_forwardGathers) - _exposedForward));
        Trace(clock, _forwardGathers, "all_gather unit (forward)");
        _forwardGathers.Clear();
        _exposedForward = 0;
    }

    private static double Duration(IEnumerable<CommWork> works) => works.Sum(w => (w.CompletedTimestamp - w.StartedTimestamp) / (double)Stopwatch.Frequency);

    private void Trace(PhaseClock clock, IEnumerable<CommWork> works, string name)
    {
        if (clock.Trace is null) return;
        foreach (CommWork w in works) clock.Trace.Slice(name, "comm", CommTrack, w.StartedTimestamp, w.CompletedTimestamp, w.Count * sizeof(float) * Ranks);
    }

    public override long BytesPerStep => 3 * RingShareBytes(Store.FlatLength);

    public override void Backward(Tensor dlogits, PhaseClock clock, bool sync)
    {
        if (!sync) throw new ArgumentException("fsdp reduces every backward into the gradient shards: --accumulate applies to single, ddp and zero1.");
        _reduceScatters.Clear();
        _backwardGathers.Clear();
        _exposedBackward = 0;
        using (clock.Phase("backward"))
        {
            _backwardStart = Stopwatch.GetTimestamp();
            Model.Backward(dlogits);
        }
        long backwardEnd = Stopwatch.GetTimestamp();
        clock.Reassign("backward", "all_gather", _exposedBackward, RingShareBytes(_backwardGathers.Sum(w => w.Count * Ranks)));
        clock.AddHidden("all_gather", Math.Max(0, Duration(_backwardGathers) - _exposedBackward));
        using (clock.Phase("reduce_scatter", RingShareBytes(Store.FlatLength))) CommWork.WaitAll(_reduceScatters);
        clock.AddHidden("reduce_scatter", Overlap.Seconds(_reduceScatters, _backwardStart, backwardEnd));
        Trace(clock, _backwardGathers, "all_gather unit (backward)");
        Trace(clock, _reduceScatters, "reduce_scatter unit");
    }

    public override void Step(PhaseClock clock)
    {
        using (clock.Phase("optimizer")) _optimizer!.Step();
    }

    /// <summary>summon_full_params: every unit all-gathered into one full flat buffer (held until the scope ends).</summary>
    public override IDisposable GatherFullParameters(bool writeBack)
    {
        if (_full) throw new InvalidOperationException("The full parameters are already gathered.");
        Store.HoldFullValues(Device);
        var gathers = _pieces.Select(p => Comm.AllGather(p.Values, Store.Values.SubView(p.Segment.Offset, p.Segment.PaddedLength))).ToList();
        CommWork.WaitAll(gathers);
        _full = true;
        return new FullScope(this, writeBack);
    }

    private sealed class FullScope(FullyShardedDataParallel owner, bool writeBack) : IDisposable
    {
        public void Dispose()
        {
            if (!owner._full) return;
            if (writeBack)
            {
                foreach (ShardPiece p in owner._pieces) p.Values.CopyFrom(owner.Device.Stream, owner.Store.Values.SubView(p.FlatOffset, p.Length));
            }
            owner.Device.Synchronize();
            owner.Store.ReleaseFullValues();
            owner._full = false;
        }
    }

    public override void Dispose()
    {
        _valuePool?.Dispose();
        _gradPool?.Dispose();
        _valueShard?.Dispose();
        _gradShard?.Dispose();
        base.Dispose();
    }
}
