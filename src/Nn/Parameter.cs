using ILGPU;

namespace Engine.Nn;

/// <summary>What a named state entry is: a trained parameter, a float buffer (BN running stats), or an integer counter (num_batches_tracked).</summary>
public enum StateKind
{
    Parameter,
    Buffer,
    Counter,
}

/// <summary>
/// One named entry of a model's state, with torchvision's name and shape. Parameters and buffers are
/// slices of the <see cref="ParameterStore"/>'s flat device buffers; counters live on the host.
/// </summary>
public sealed class Parameter
{
    internal Parameter(string name, int[] shape, StateKind kind, Action<Span<float>, Random>? init)
    {
        Name = name;
        Shape = shape;
        Kind = kind;
        Init = init;
        Length = Tensor.ShapeLength(shape);
    }

    public string Name { get; }
    public int[] Shape { get; }
    public StateKind Kind { get; }
    public long Length { get; }

    /// <summary>Element offset inside the flat parameter buffer (parameters) or buffer store (buffers).</summary>
    public long Offset { get; internal set; } = -1;

    internal Action<Span<float>, Random>? Init { get; }

    /// <summary>Host value of a counter entry (num_batches_tracked).</summary>
    public long Count { get; set; }

    /// <summary>The entry's values on the device (parameters and buffers).</summary>
    public ArrayView<float> Value { get; internal set; }

    /// <summary>The entry's gradient on the device (parameters only).</summary>
    public ArrayView<float> Grad { get; internal set; }

    public Tensor ValueTensor => new(Value, Shape);

    public override string ToString() => $"{Name} [{string.Join(',', Shape)}] {Kind}";
}
