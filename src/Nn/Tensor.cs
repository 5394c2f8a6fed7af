using ILGPU;

namespace Engine.Nn;

/// <summary>
/// A view of device memory plus its shape (NCHW for images, [N, F] for features). It owns nothing:
/// the layer that produced it keeps the buffer, so a tensor stays valid until that layer runs again.
/// </summary>
public readonly record struct Tensor(ArrayView<float> View, int[] Shape)
{
    public long Length => View.Length;
    public int Rank => Shape.Length;
    public int this[int dim] => Shape[dim];

    /// <summary>Product of the dimensions after the first (features per sample).</summary>
    public int PerSample => Shape.Length <= 1 ? 1 : checked((int)(ShapeLength(Shape) / Shape[0]));

    public static long ShapeLength(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (int d in shape) n *= d;
        return n;
    }

    public Tensor Reshape(params int[] shape)
    {
        if (ShapeLength(shape) != Length)
        {
            throw new ArgumentException($"Cannot reshape [{string.Join(',', Shape)}] to [{string.Join(',', shape)}].");
        }
        return new Tensor(View, shape);
    }

    public override string ToString() => $"Tensor[{string.Join(',', Shape)}]";
}
