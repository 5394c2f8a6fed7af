using Engine.Kernels;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Layers;

/// <summary>nn.BatchNorm2d(c) with PyTorch's defaults: momentum 0.1, eps 1e-5, affine, running stats tracked.</summary>
public sealed class BatchNorm2dLayer : Module
{
    public const float Momentum = 0.1f;
    public const float Eps = 1e-5f;

    private readonly Scratch<float> _y = new(), _dx = new(), _mean = new(), _invStd = new();
    private Tensor _x;

    public BatchNorm2dLayer(Device device, ParameterStore store, string name, int channels) : base(device, name)
    {
        Channels = channels;
        Weight = store.AddParameter(Join(name, "weight"), new[] { channels }, (s, _) => s.Fill(1f));
        Bias = store.AddParameter(Join(name, "bias"), new[] { channels }, (s, _) => s.Fill(0f));
        RunningMean = store.AddBuffer(Join(name, "running_mean"), new[] { channels }, 0f);
        RunningVar = store.AddBuffer(Join(name, "running_var"), new[] { channels }, 1f);
        NumBatchesTracked = store.AddCounter(Join(name, "num_batches_tracked"));
    }

    public int Channels { get; }
    public Parameter Weight { get; }
    public Parameter Bias { get; }
    public Parameter RunningMean { get; }
    public Parameter RunningVar { get; }
    public Parameter NumBatchesTracked { get; }

    public override Tensor Forward(Tensor x, bool training)
    {
        ExpectRank(x, 4, Name);
        _x = x;
        int n = x[0], hw = x[2] * x[3];
        Tensor y = _y.Tensor(Device, x.Shape);
        if (training)
        {
            BatchNorm2d.ForwardTrain(Device, x.View, Weight.Value, Bias.Value, y.View, _mean.Get(Device, Channels), _invStd.Get(Device, Channels),
                RunningMean.Value, RunningVar.Value, n, Channels, hw, Momentum, Eps);
            NumBatchesTracked.Count++;
        }
        else
        {
            BatchNorm2d.ForwardEval(Device, x.View, Weight.Value, Bias.Value, RunningMean.Value, RunningVar.Value, y.View, n, Channels, hw, Eps);
        }
        return y;
    }

    public override Tensor Backward(Tensor dy)
    {
        Tensor dx = _dx.Tensor(Device, _x.Shape);
        BatchNorm2d.Backward(Device, _x.View, dy.View, Weight.Value, _mean.Get(Device, Channels), _invStd.Get(Device, Channels),
            dx.View, Weight.Grad, Bias.Grad, _x[0], Channels, _x[2] * _x[3]);
        RaiseGradientReady(Bias);
        RaiseGradientReady(Weight);
        return dx;
    }

    public override void Dispose()
    {
        _y.Dispose();
        _dx.Dispose();
        _mean.Dispose();
        _invStd.Dispose();
        base.Dispose();
    }
}
