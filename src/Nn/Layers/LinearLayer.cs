using Engine.Kernels;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Layers;

/// <summary>nn.Linear(in, out) with its default initialisation: weight and bias uniform in ±1/sqrt(in).</summary>
public sealed class LinearLayer : Module
{
    private readonly Scratch<float> _y = new(), _dx = new();
    private Tensor _x;

    public LinearLayer(Device device, ParameterStore store, string name, int inFeatures, int outFeatures) : base(device, name)
    {
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        double bound = 1.0 / Math.Sqrt(inFeatures);
        Weight = store.AddParameter(Join(name, "weight"), new[] { outFeatures, inFeatures }, (s, rng) => Init.Uniform(s, rng, bound));
        Bias = store.AddParameter(Join(name, "bias"), new[] { outFeatures }, (s, rng) => Init.Uniform(s, rng, bound));
    }

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Parameter Weight { get; }
    public Parameter Bias { get; }

    public override long ForwardFlops => 2L * (_x.Shape is null ? 0 : _x[0]) * InFeatures * OutFeatures;

    public override Tensor Forward(Tensor x, bool training)
    {
        ExpectRank(x, 2, Name);
        if (x[1] != InFeatures) throw new ArgumentException($"{Name} expects {InFeatures} features, got {x}.");
        _x = x;
        Tensor y = _y.Tensor(Device, x[0], OutFeatures);
        Linear.Forward(Device, x.View, Weight.Value, Bias.Value, y.View, x[0], InFeatures, OutFeatures);
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        Tensor dx = _dx.Tensor(Device, _x.Shape);
        Linear.Backward(Device, _x.View, Weight.Value, dy.View, dx.View, Weight.Grad, Bias.Grad, _x[0], InFeatures, OutFeatures);
        RaiseGradientReady(Bias);
        RaiseGradientReady(Weight);
        return dx;
    }

    public override void Dispose()
    {
        _y.Dispose();
        _dx.Dispose();
        base.Dispose();
    }
}
