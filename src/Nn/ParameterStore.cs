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

    public long ParameterCount { get; private set; }
    public long BufferCount { get; private set; }
    public bool IsBuilt => _values is not null;

    public ArrayView<float> Values => Built(_values);
    public ArrayView<float> Grads => Built(_grads);
    public ArrayView<float> BufferValues => Built(_buffers);

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

    /// <summary>Assigns offsets, allocates the flat buffers on <paramref name="dev"/> and zeroes the gradients.</summary>
    public void Build(Device dev)
    {
        if (IsBuilt) throw new InvalidOperationException("The parameter store is already built.");
        long offset = 0;
        foreach (Parameter p in Parameters.Reverse())
        {
            p.Offset = offset;
            offset += p.Length;
        }
        ParameterCount = offset;
        offset = 0;
        foreach (Parameter p in Buffers)
        {
            p.Offset = offset;
            offset += p.Length;
        }
        BufferCount = offset;
        _values = dev.Allocate<float>(Math.Max(1, ParameterCount));
        _grads = dev.Allocate<float>(Math.Max(1, ParameterCount));
        _buffers = dev.Allocate<float>(Math.Max(1, BufferCount));
        Elementwise.Fill(dev, _grads.View, 0f);
        foreach (Parameter p in _entries)
        {
            if (p.Kind == StateKind.Parameter)
            {
                p.Value = Values.SubView(p.Offset, p.Length);
                p.Grad = Grads.SubView(p.Offset, p.Length);
            }
            else if (p.Kind == StateKind.Buffer)
            {
                p.Value = BufferValues.SubView(p.Offset, p.Length);
            }
        }
    }

    /// <summary>Fills parameters and buffers from their initialisers with one RNG seeded by <paramref name="seed"/>, in registration order.</summary>
    public void Initialize(Device dev, int seed)
    {
        var rng = new Random(seed);
        var values = new float[ParameterCount];
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

    public float[] DownloadValues(Device dev) => dev.Download(Values.SubView(0, ParameterCount));
    public float[] DownloadGrads(Device dev) => dev.Download(Grads.SubView(0, ParameterCount));
    public float[] DownloadBuffers(Device dev) => dev.Download(BufferValues.SubView(0, BufferCount));

    public void UploadValues(Device dev, ReadOnlySpan<float> values) => Upload(dev, Values, values, ParameterCount, "parameters");
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

    private static ArrayView<float> Built(MemoryBuffer1D<float, Stride1D.Dense>? buffer)
        => buffer is null ? throw new InvalidOperationException("Build the parameter store first.") : buffer.View;

    public void Dispose()
    {
        _values?.Dispose();
        _grads?.Dispose();
        _buffers?.Dispose();
    }
}
