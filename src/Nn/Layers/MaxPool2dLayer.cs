using Engine.Kernels;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Layers;

/// <summary>nn.MaxPool2d(kernel_size=3, stride=2, padding=1), the ImageNet stem's pool.</summary>
public sealed class MaxPool2dLayer : Module
{
    private readonly Scratch<float> _y = new(), _dx = new();
    private readonly Scratch<int> _argmax = new();
    private Pool2dShape _shape;

    public MaxPool2dLayer(Device device, string name, int kernel = 3, int stride = 2, int padding = 1) : base(device, name)
    {
        Kernel = kernel;
        Stride = stride;
        Padding = padding;
    }

    public int Kernel { get; }
    public int Stride { get; }
    public int Padding { get; }

    public override Tensor Forward(Tensor x, bool training)
    {
        ExpectRank(x, 4, Name);
        _shape = new Pool2dShape(x[0], x[1], x[2], x[3], Kernel, Stride, Padding);
        Tensor y = _y.Tensor(Device, x[0], x[1], _shape.OutH, _shape.OutW);
        MaxPool2d.Forward(Device, x.View, y.View, _argmax.Get(Device, y.Length), _shape);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        Tensor dx = _dx.Tensor(Device, _shape.N, _shape.C, _shape.H, _shape.W);
        MaxPool2d.Backward(Device, dy.View, _argmax.Get(Device, dy.Length), dx.View, _shape);
        return dx;
    }

    public override void Dispose()
    {
        _y.Dispose();
        _dx.Dispose();
        _argmax.Dispose();
        base.Dispose();
    }
}
