using Engine.Kernels;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Layers;

/// <summary>
/// torchvision's BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + identity), where identity is x or,
/// when the shape changes, downsample = Sequential(conv1x1 stride s, BatchNorm2d). The first ReLU runs
/// inside bn1 (<see cref="BatchNorm2dLayer.FuseRelu"/>).
/// </summary>
public sealed class BasicBlock : Module
{
    private readonly Scratch<float> _sum = new(), _dx = new();
    private readonly ReluLayer _relu2;
    private Tensor _x;

    public BasicBlock(Device device, ParameterStore store, string name, int inPlanes, int planes, int stride) : base(device, name)
    {
        Conv1 = new Conv2dLayer(device, store, Join(name, "conv1"), inPlanes, planes, 3, stride, 1);
        Bn1 = new BatchNorm2dLayer(device, store, Join(name, "bn1"), planes) { FuseRelu = true };
        Conv2 = new Conv2dLayer(device, store, Join(name, "conv2"), planes, planes, 3, 1, 1);
        Bn2 = new BatchNorm2dLayer(device, store, Join(name, "bn2"), planes);
        if (stride != 1 || inPlanes != planes)
        {
            DownsampleConv = new Conv2dLayer(device, store, Join(name, "downsample.0"), inPlanes, planes, 1, stride, 0);
            DownsampleBn = new BatchNorm2dLayer(device, store, Join(name, "downsample.1"), planes);
        }
        _relu2 = new ReluLayer(device, Join(name, "relu"));
        foreach (Module m in Children()) Adopt(m);
    }

    public Conv2dLayer Conv1 { get; }
    public BatchNorm2dLayer Bn1 { get; }
    public Conv2dLayer Conv2 { get; }
    public BatchNorm2dLayer Bn2 { get; }
    public Conv2dLayer? DownsampleConv { get; }
    public BatchNorm2dLayer? DownsampleBn { get; }

    public IEnumerable<Module> Children()
    {
        yield return Conv1;
        yield return Bn1;
        yield return Conv2;
        yield return Bn2;
        if (DownsampleConv is not null) yield return DownsampleConv;
        if (DownsampleBn is not null) yield return DownsampleBn;
    }

    public override long ForwardFlops => Conv1.ForwardFlops + Conv2.ForwardFlops + (DownsampleConv?.ForwardFlops ?? 0);

    public override Tensor Forward(Tensor x, bool training)
    {
        _x = x;
        Tensor h = Bn1.Forward(Conv1.Forward(x, training), training); // relu(bn1(.)), fused
        h = Bn2.Forward(Conv2.Forward(h, training), training);
        Tensor identity = DownsampleBn is null ? x : DownsampleBn.Forward(DownsampleConv!.Forward(x, training), training);
        Tensor sum = _sum.Tensor(Device, h.Shape);
        Elementwise.Add(Device, h.View, identity.View, sum.View);
        return _relu2.Forward(sum, training);
    }

    /// <summary>
    /// Downsample branch first, then the main branch: that walks the parameters in exactly the reverse
    /// of torchvision's state_dict order, so gradients become ready in flat-buffer order.
    /// </summary>
    public override Tensor Backward(Tensor dy)
    {
        Tensor d = _relu2.Backward(dy);
        Tensor? dIdentity = DownsampleBn is null ? null : DownsampleConv!.Backward(DownsampleBn.Backward(d));
        Tensor dh = Conv1.Backward(Bn1.Backward(Conv2.Backward(Bn2.Backward(d))));
        Tensor dx = _dx.Tensor(Device, _x.Shape);
        Elementwise.Add(Device, dh.View, (dIdentity ?? d).View, dx.View);
        return dx;
    }

    public override void Dispose()
    {
        foreach (Module m in Children()) m.Dispose();
        _sum.Dispose();
        _dx.Dispose();
        base.Dispose();
    }
}
