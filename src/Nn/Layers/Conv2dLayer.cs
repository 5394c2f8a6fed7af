using Engine.Kernels;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Layers;

/// <summary>nn.Conv2d(in, out, k, stride, padding, bias=False), initialised with kaiming_normal_(mode='fan_out', nonlinearity='relu').</summary>
public sealed class Conv2dLayer : Module
{
    private readonly Scratch<float> _y = new(), _dx = new();
    private Tensor _x;
    private Conv2dShape _shape;

    public Conv2dLayer(Device device, ParameterStore store, string name, int inChannels, int outChannels, int kernel, int stride, int padding)
        : base(device, name)
    {
        InChannels = inChannels;
        OutChannels = outChannels;
        Kernel = kernel;
        Stride = stride;
        Padding = padding;
        int fanOut = outChannels * kernel * kernel;
        Weight = store.AddParameter(Join(name, "weight"), new[] { outChannels, inChannels, kernel, kernel },
            (span, rng) => Init.Normal(span, rng, Math.Sqrt(2.0 / fanOut)));
    }

    public int InChannels { get; }
    public int OutChannels { get; }
    public int Kernel { get; }
    public int Stride { get; }
    public int Padding { get; }
    public Parameter Weight { get; }
    public Conv2dShape Shape => _shape;

    public override long ForwardFlops => _shape.N == 0 ? 0 : _shape.Flops;

    public override Tensor Forward(Tensor x, bool training)
    {
        ExpectRank(x, 4, Name);
        if (x[1] != InChannels) throw new ArgumentException($"{Name} expects {InChannels} input channels, got {x}.");
        _x = x;
        _shape = new Conv2dShape(x[0], InChannels, x[2], x[3], OutChannels, Kernel, Kernel, Stride, Padding);
        Tensor y = _y.Tensor(Device, _shape.N, OutChannels, _shape.OutH, _shape.OutW);
        Conv2d.Forward(Device, x.View, Weight.Value, y.View, _shape);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        Conv2d.BackwardWeight(Device, _x.View, dy.View, Weight.Grad, _shape);
        RaiseGradientReady(Weight);
        Tensor dx = _dx.Tensor(Device, _x.Shape);
        Conv2d.BackwardData(Device, dy.View, Weight.Value, dx.View, _shape);
        return dx;
    }

    /// <summary>The stem's input gradient is never used: skip the backward-data GEMM for it.</summary>
    public void BackwardWeightOnly(Tensor dy)
    {
        Conv2d.BackwardWeight(Device, _x.View, dy.View, Weight.Grad, _shape);
        RaiseGradientReady(Weight);
    }

    public override void Dispose()
    {
        _y.Dispose();
        _dx.Dispose();
        base.Dispose();
    }
}
