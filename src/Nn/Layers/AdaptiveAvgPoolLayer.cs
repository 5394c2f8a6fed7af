using Engine.Kernels;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Layers;

/// <summary>nn.AdaptiveAvgPool2d((1, 1)) followed by torch.flatten(x, 1): [N, C, H, W] to [N, C].</summary>
public sealed class AdaptiveAvgPoolLayer : Module
{
    private readonly Scratch<float> _y = new(), _dx = new();
    private int[] _inShape = Array.Empty<int>();

    public AdaptiveAvgPoolLayer(Device device, string name) : base(device, name) { }

    public override Tensor Forward(Tensor x, bool training)
    {
        ExpectRank(x, 4, Name);
        _inShape = x.Shape;
        Tensor y = _y.Tensor(Device, x[0], x[1]);
        AdaptiveAvgPool.Forward(Device, x.View, y.View, x[0] * x[1], x[2] * x[3]);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        Tensor dx = _dx.Tensor(Device, _inShape);
        AdaptiveAvgPool.Backward(Device, dy.View, dx.View, _inShape[0] * _inShape[1], _inShape[2] * _inShape[3]);
        return dx;
    }

    public override void Dispose()
    {
        _y.Dispose();
        _dx.Dispose();
        base.Dispose();
    }
}
