using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Parallel;

/// <summary>
/// Gradient accumulation over micro-batches. The layers overwrite their gradients on every backward (ResNet uses
/// each parameter once), so the gradients of the micro-batches before the last are added here, and this sum is added
/// to the last micro-batch's gradients (all at once, or bucket by bucket as DDP launches them) and then cleared.
/// </summary>
public sealed class GradientAccumulator(Device device, long length) : IDisposable
{
    private MemoryBuffer1D<float, Stride1D.Dense>? _sum;

    /// <summary>Whether gradients have been kept since the last <see cref="AddTo"/> of the whole buffer.</summary>
    public bool Holding { get; private set; }

    private ArrayView<float> Sum => ((ArrayView<float>)_sum!.View).SubView(0, length);

    /// <summary>Keeps <paramref name="grads"/> (the whole flat gradient) of a micro-batch that does not synchronise.</summary>
    public void Keep(ArrayView<float> grads)
    {
        if (_sum is null)
        {
            _sum = device.Allocate<float>(Math.Max(1, length), MemoryUse.Gradients);
            Elementwise.Fill(device, _sum.View, 0f);
        }
        Elementwise.Accumulate(device, Sum, grads);
        Holding = true;
    }

    /// <summary>Adds the kept sum of elements [offset, offset + target.Length) to <paramref name="target"/>.</summary>
    public void AddTo(ArrayView<float> target, long offset)
    {
        if (Holding) Elementwise.Accumulate(device, target, Sum.SubView(offset, target.Length));
    }

    /// <summary>Forgets the kept sum once every part of it has been added.</summary>
    public void Clear()
    {
        if (!Holding) return;
        Elementwise.Fill(device, Sum, 0f);
        Holding = false;
    }

    public void Dispose() => _sum?.Dispose();
}
