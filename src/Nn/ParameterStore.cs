using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn;

/// <summary>
/// All of a model's parameters in ONE contiguous device buffer and all their gradients in another,
/// plus the float buffers (BN running statistics) in a third. Parameters are laid out in the REVERSE
/// of registration (forward) order, so backward makes gradients ready front to back in one sweep: a
/// DDP bucket is a contiguous slice, a DP replicate is one copy, a DP reduce is one sum.
/// </summary>
public sealed class ParameterStore : IDisposable
{
    private readonly List<Parameter> _entries = new();
    private MemoryBuffer1D<float, Stride1D.Dense>? _values, _grads, _buffers;

    /// <summary>Every entry in registration order, which is torchvision's state_dict order.</summary>
    public IReadOnlyList<Parameter> Entries => _entries;
    public IEnumerable<Parameter> Parameters => _entries.Where(e => e.Kind == StateKind.Parameter);
    public IEnumerable<Parameter> Buffers => _entries.Where(e => e.Kind == StateKind.Buffer);
    public IEnumerable<Parameter> Counters => _entries.Where(e => e.Kind == StateKind.Counter);

    /// <summary>Trained values in the model (without the padding a sharded layout adds).</summary>
    public long ParameterCount { get; private set; }

    /// <summary>Length of the flat parameter and gradient buffers: <see cref="ParameterCount"/> plus each segment's padding.</summary>
    public long FlatLength { get; private set; }

    public long BufferCount { get; private set; }
    public bool IsBuilt => Layout is not null;

    /// <summary>How the flat buffers are cut into segments and which of them this device holds (set by <see cref="Build"/>).</summary>
    public StoreLayout? Layout { get; private set; }

    /// <summary>The flat buffer's segments in order (one for an unsharded model; DDP's buckets; FSDP's units).</summary>
    public IReadOnlyList<StoreSegment> Segments { get; private set; } = Array.Empty<StoreSegment>();

    /// <summary>Parameters in flat-buffer order, the order backward makes their gradients ready.</summary>
    public IReadOnlyList<Parameter> FlatOrder { get; private set; } = Array.Empty<Parameter>();

    public ArrayView<float> Values => Held(_values, "parameters");
    public ArrayView<float> Grads => Held(_grads, "gradients");
    public ArrayView<float> BufferValues => Held(_buffers, "buffers");

    /// <summary>Whether the full flat parameter (gradient) buffer exists on this device: not under FSDP (ZeRO-2) outside a gather.</summary>
    public bool HoldsValues => _values is not null;
    public bool HoldsGrads => _grads is not null;

    public Parameter AddParameter(string name, int[] shape, Action<Span<float>, Random> init) => Add(new Parameter(name, shape, StateKind.Parameter, init));

    public Parameter AddBuffer(string name, int[] shape, float value) => Add(new Parameter(name, shape, StateKind.Buffer, (s, _) => s.Fill(value)));

    public Parameter AddCounter(string name) => Add(new Parameter(name, Array.Empty<int>(), StateKind.Counter, null));

    private Parameter Add(Parameter p)
    {
        if (IsBuilt) throw new InvalidOperationException("The parameter store is already built.");
        if (_entries.Any(e => e.Name == p.Name)) throw new InvalidOperationException($"Duplicate state entry '{p.Name}'.");
        _entries.Add(p);
        return p;
    }

    public Parameter this[string name] => _entries.FirstOrDefault(e => e.Name == name)
        ?? throw new KeyNotFoundException($"No state entry named '{name}'.");

    /// <summary>
    /// Assigns offsets and allocates the flat buffers on <paramref name="dev"/> (gradients zeroed). Without a
    /// <paramref name="layout"/> policy the parameters form one segment and both flat buffers exist; a policy (DDP,
    /// ZeRO, FSDP) cuts them into segments, pads each to a multiple of its alignment (the world size, so that every
    /// rank's piece of a segment has the same length), and may leave out the full buffers a sharded mode does not keep.
    /// </summary>
    public void Build(Device dev, Func<IReadOnlyList<Parameter>, StoreLayout>? layout = null)
    {
        if (IsBuilt) throw new InvalidOperationException("The parameter store is already built.");
        FlatOrder = Parameters.Reverse().ToList();
        ParameterCount = FlatOrder.Sum(p => p.Length);
        StoreLayout l = layout?.Invoke(FlatOrder) ?? StoreLayout.Whole(FlatOrder.Count);
        l.Check(FlatOrder.Count);
        var segments = new List<StoreSegment>();
        long offset = 0;
        int first = 0;
        foreach (int count in l.SegmentParameters)
        {
            long start = offset;
            for (int i = first; i < first + count; i++)
            {
                FlatOrder[i].Offset = offset;
                offset += FlatOrder[i].Length;
            }
            long length = offset - start;
            long padded = (length + l.Align - 1) / l.Align * l.Align;
            segments.Add(new StoreSegment(segments.Count, start, length, padded, first, count));
            offset = start + padded;
            first += count;
        }
        FlatLength = offset;
        Segments = segments;
        Layout = l;
        offset = 0;
        foreach (Parameter p in Buffers)
        {
            p.Offset = offset;
            offset += p.Length;
        }
        BufferCount = offset;
        if (l.HoldValues) _values = dev.Allocate<float>(Math.Max(1, FlatLength), MemoryUse.Parameters);
        if (l.HoldGrads)
        {
            _grads = dev.Allocate<float>(Math.Max(1, FlatLength), MemoryUse.Gradients);
            Elementwise.Fill(dev, _grads.View, 0f);
        }
        _buffers = dev.Allocate<float>(Math.Max(1, BufferCount), MemoryUse.Parameters);
        if (_values is not null) Elementwise.Fill(dev, _values.View, 0f); // the padding stays zero: SGD keeps it zero
        foreach (Parameter p in _entries)
        {
            if (p.Kind == StateKind.Parameter)
            {
                if (_values is not null) p.Value = Values.SubView(p.Offset, p.Length);
                if (_grads is not null) p.Grad = Grads.SubView(p.Offset, p.Length);
            }
            else if (p.Kind == StateKind.Buffer)
            {
                p.Value = BufferValues.SubView(p.Offset, p.Length);
            }
        }
    }

    /// <summary>
    /// Points every parameter's value (<paramref name="values"/>) or gradient at <paramref name="flat"/>, a buffer laid
    /// out like the flat buffer from element <paramref name="flatStart"/> on (a gathered FSDP unit, a gradient bucket).
    /// </summary>
    public void Point(IEnumerable<Parameter> parameters, ArrayView<float> flat, long flatStart, bool values)
    {
        foreach (Parameter p in parameters)
        {
            ArrayView<float> view = flat.SubView(p.Offset - flatStart, p.Length);
            if (values) p.Value = view;
            else p.Grad = view;
        }
    }

    /// <summary>Allocates the full flat parameter buffer where the layout left it out (FSDP's summon_full_params), views pointed at it.</summary>
    public void HoldFullValues(Device dev)
    {
        if (_values is not null) throw new InvalidOperationException("The full parameter buffer is already held.");
        _values = dev.Allocate<float>(Math.Max(1, FlatLength), MemoryUse.Communication);
        Elementwise.Fill(dev, _values.View, 0f);
        Point(FlatOrder, _values.View, 0, values: true);
    }

    /// <summary>Frees the buffer <see cref="HoldFullValues"/> made; parameter views are invalid until pointed again.</summary>
    public void ReleaseFullValues()
    {
        if (Layout is { HoldValues: true }) throw new InvalidOperationException("This layout keeps its full parameter buffer.");
        _values?.Dispose();
        _values = null;
    }

    /// <summary>Fills parameters and buffers from their initialisers with one RNG seeded by <paramref name="seed"/>, in registration order.</summary>
    public void Initialize(Device dev, int seed)
    {
        var rng = new Random(seed);
        var values = new float[FlatLength];
        var buffers = new float[BufferCount];
        foreach (Parameter p in _entries)
        {
            switch (p.Kind)
            {
                case StateKind.Parameter: p.Init!(values.AsSpan((int)p.Offset, (int)p.Length), rng); break;
                case StateKind.Buffer: p.Init!(buffers.AsSpan((int)p.Offset, (int)p.Length), rng); break;
                default: p.Count = 0; break;
            }
        }
        UploadValues(dev, values);
        UploadBuffers(dev, buffers);
    }

    /// <summary>The flat parameters (<see cref="FlatLength"/> values: a parameter's are at its <see cref="Parameter.Offset"/>).</summary>
    public float[] DownloadValues(Device dev) => dev.Download(Values.SubView(0, FlatLength));
    public float[] DownloadGrads(Device dev) => dev.Download(Grads.SubView(0, FlatLength));
    public float[] DownloadBuffers(Device dev) => dev.Download(BufferValues.SubView(0, BufferCount));

    public void UploadValues(Device dev, ReadOnlySpan<float> values) => Upload(dev, Values, values, FlatLength, "parameters");
    public void UploadBuffers(Device dev, ReadOnlySpan<float> values) => Upload(dev, BufferValues, values, BufferCount, "buffers");

    private static void Upload(Device dev, ArrayView<float> target, ReadOnlySpan<float> values, long count, string what)
    {
        if (values.Length != count) throw new ArgumentException($"Expected {count} {what}, got {values.Length}.");
        if (count > 0)
        {
            target.SubView(0, count).CopyFromCPU(dev.Stream, values);
            dev.Synchronize();
        }
    }

    /// <summary>The slice of <paramref name="flat"/> (laid out like the parameters) that belongs to <paramref name="p"/>.</summary>
    public static ArrayView<float> SliceOf(ArrayView<float> flat, Parameter p) => flat.SubView(p.Offset, p.Length);

    private ArrayView<float> Held(MemoryBuffer1D<float, Stride1D.Dense>? buffer, string what) => buffer is not null ? buffer.View
        : throw new InvalidOperationException(IsBuilt ? $"The full flat {what} buffer is not held on this device: the layout shards it (gather it first)." : "Build the parameter store first.");

    public void Dispose()
    {
        _values?.Dispose();
        _grads?.Dispose();
        _buffers?.Dispose();
    }
}
