using Engine.Kernels;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Layers;

/// <summary>nn.ReLU(inplace=True) as torchvision uses it: the output overwrites the input, and backward masks with the output.</summary>
public sealed class ReluLayer : Module
{
    private Tensor _y;

    public ReluLayer(Device device, string name) : base(device, name) { }

    public override Tensor Forward(Tensor x, bool training)
    {
        Relu.Forward(Device, x.View, x.View);
        _y = x;
        return x;
    }

    /// <summary>In place on <paramref name="dy"/>: the caller's gradient buffer is consumed.</summary>
    public override Tensor Backward(Tensor dy)
    {
        Relu.Backward(Device, _y.View, dy.View, dy.View);
        return dy;
    }
}
