using Engine.Kernels;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Layers;

/// <summary>
/// torchvision's BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + identity), where identity is x or,
/// when the shape changes, downsample = Sequential(conv1x1 stride s, BatchNorm2d). The first ReLU runs
/// inside bn1 (<see cref="BatchNorm2dLayer.FuseRelu"/>); the residual add and the last ReLU run inside
/// bn2 (<see cref="BatchNorm2dLayer.ForwardAddRelu"/>).
/// </summary>
public sealed class BasicBlock : Module
{
    private readonly Scratch<float> _dx = new();
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
        Tensor identity = DownsampleBn is null ? x : DownsampleBn.Forward(DownsampleConv!.Forward(x, training), training);
        return Bn2.ForwardAddRelu(Conv2.Forward(h, training), identity, training); // relu(bn2(.) + identity), fused
    }

    /// <summary>
    /// Downsample branch first, then the main branch: that walks the parameters in exactly the reverse
    /// of torchvision's state_dict order, so gradients become ready in flat-buffer order. bn2's fused
    /// backward computes d(identity) (dy masked in place) and runs the downsample branch on it before it
    /// reports its own gradients.
    /// </summary>
    public override Tensor Backward(Tensor dy)
    {
        Tensor dIdentity = default;
        Tensor d = Bn2.BackwardAddRelu(dy, g => dIdentity = DownsampleBn is null ? g : DownsampleConv!.Backward(DownsampleBn.Backward(g)));
        Tensor dh = Conv1.Backward(Bn1.Backward(Conv2.Backward(d)));
        Tensor dx = _dx.Tensor(Device, _x.Shape);
        Elementwise.Add(Device, dh.View, dIdentity.View, dx.View);
        return dx;
    }

    public override void Dispose()
    {
        foreach (Module m in Children()) m.Dispose();
        _dx.Dispose();
        base.Dispose();
    }
}
