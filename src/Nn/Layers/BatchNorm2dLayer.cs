using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Nn.Layers;

/// <summary>nn.BatchNorm2d(c) with PyTorch's defaults: momentum 0.1, eps 1e-5, affine, running stats tracked.</summary>
public sealed class BatchNorm2dLayer : Module
{
    public const float Momentum = 0.1f;
    public const float Eps = 1e-5f;

    private readonly Scratch<float> _y = new(), _dx = new(), _mean = new(), _invStd = new(), _discard = new(), _zeros = new();
    private Tensor _x, _y0;
    private bool _frozenStep;

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

    /// <summary>
    /// Train with BN in eval mode (PyTorch: the BN modules put in .eval() while the model trains): the
    /// running statistics normalise and are not updated, so each sample's output no longer depends on
    /// the rest of its batch. Makes DP and DDP equal to single-device training with their global batch.
    /// </summary>
    public bool Frozen { get; set; }
    /// <summary>
    /// Apply the ReLU that follows this layer inside its own kernels (torchvision's bn1 -> relu pairs):
    /// forward returns max(0, bn(x)) and backward takes the gradient of that output, masking it by the
    /// output within batch norm's passes. The module graph then leaves out the separate ReLU.
    /// </summary>
    public bool FuseRelu { get; set; }

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
        _frozenStep = training && Frozen;
        if (training && !Frozen)
        {
            var train = FuseRelu ? (BatchNormTrain)BatchNorm2d.ForwardTrainRelu : BatchNorm2d.ForwardTrain;
            train(Device, x.View, Weight.Value, Bias.Value, y.View, _mean.Get(Device, Channels), _invStd.Get(Device, Channels),
                RunningMean.Value, RunningVar.Value, n, Channels, hw, Momentum, Eps);
            NumBatchesTracked.Count++;
        }
        else if (FuseRelu)
        {
            BatchNorm2d.ForwardEvalRelu(Device, x.View, Weight.Value, Bias.Value, RunningMean.Value, RunningVar.Value, y.View, n, Channels, hw, Eps);
        }
        else
        {
            BatchNorm2d.ForwardEval(Device, x.View, Weight.Value, Bias.Value, RunningMean.Value, RunningVar.Value, y.View, n, Channels, hw, Eps);
        }
        _y0 = y;
        return y;
    }

    /// <summary>
    /// relu(bn(x) + identity) in one op (the tail of a BasicBlock: bn2, the residual add and the last
    /// ReLU): training writes it in the normalise pass; eval and frozen steps use the running statistics'
    /// fused kernel. Pair with <see cref="BackwardAddRelu"/>, not <see cref="Backward"/>.
    /// </summary>
    public Tensor ForwardAddRelu(Tensor x, Tensor identity, bool training)
    {
        ExpectRank(x, 4, Name);
        if (!identity.Shape.SequenceEqual(x.Shape))
            throw new ArgumentException($"{Name}: identity shape [{string.Join(", ", identity.Shape)}] differs from the input's [{string.Join(", ", x.Shape)}].");
        _x = x;
        int n = x[0], hw = x[2] * x[3];
        Tensor y = _y.Tensor(Device, x.Shape);
        _frozenStep = training && Frozen;
        if (training && !Frozen)
        {
            BatchNorm2d.ForwardTrainAddRelu(Device, x.View, identity.View, Weight.Value, Bias.Value, y.View, _mean.Get(Device, Channels),
                _invStd.Get(Device, Channels), RunningMean.Value, RunningVar.Value, n, Channels, hw, Momentum, Eps);
            NumBatchesTracked.Count++;
        }
        else
        {
            BatchNorm2d.ForwardEvalAddRelu(Device, x.View, identity.View, Weight.Value, Bias.Value, RunningMean.Value, RunningVar.Value, y.View,
                n, Channels, hw, Eps);
        }
        _y0 = y;
        return y;
    }

    /// <summary>
    /// Backward of <see cref="ForwardAddRelu"/> given dy, the gradient of its output. dy is masked in
    /// place by (output &gt; 0) and so becomes d(identity), which is handed to <paramref name="identityBackward"/>
    /// (the downsample branch's backward, or nothing for a plain skip) BEFORE this layer's own gradients
    /// are reported ready: that keeps the gradient-ready order of downsample, then bn2. Returns dx.
    /// </summary>
    public Tensor BackwardAddRelu(Tensor dy, Action<Tensor> identityBackward)
    {
        int n = _x[0], hw = _x[2] * _x[3];
        if (_frozenStep)
        {
            // Frozen layers keep the ReLU's backward as its own pass, as FuseRelu does.
            Relu.Backward(Device, _y0.View, dy.View, dy.View);
            identityBackward(dy);
            return BackwardFrozen(dy);
        }
        Tensor dx = _dx.Tensor(Device, _x.Shape);
        BatchNorm2d.BackwardAddRelu(Device, _x.View, _y0.View, dy.View, Weight.Value, _mean.Get(Device, Channels), _invStd.Get(Device, Channels),
            dx.View, dy.View, Weight.Grad, Bias.Grad, n, Channels, hw);
        identityBackward(dy);
        RaiseGradientReady(Bias);
        RaiseGradientReady(Weight);
        return dx;
    }

    private delegate void BatchNormTrain(Device dev, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> runningMean, ArrayView<float> runningVar,
        int n, int c, int hw, float momentum, float eps);

    /// <summary>With <see cref="FuseRelu"/>, <paramref name="dy"/> is the gradient of the ReLU's output.</summary>
    public override Tensor Backward(Tensor dy)
    {
        if (_frozenStep)
        {
            // Frozen layers keep the ReLU's backward as its own pass (in place, as the ReLU module did).
            if (FuseRelu) Relu.Backward(Device, _y0.View, dy.View, dy.View);
            return BackwardFrozen(dy);
        }
        Tensor dx = _dx.Tensor(Device, _x.Shape);
        if (FuseRelu)
        {
            BatchNorm2d.BackwardRelu(Device, _x.View, _y0.View, dy.View, Weight.Value, _mean.Get(Device, Channels), _invStd.Get(Device, Channels),
                dx.View, Weight.Grad, Bias.Grad, _x[0], Channels, _x[2] * _x[3]);
        }
        else
        {
            BatchNorm2d.Backward(Device, _x.View, dy.View, Weight.Value, _mean.Get(Device, Channels), _invStd.Get(Device, Channels),
                dx.View, Weight.Grad, Bias.Grad, _x[0], Channels, _x[2] * _x[3]);
        }
        RaiseGradientReady(Bias);
        RaiseGradientReady(Weight);
        return dx;
    }

    /// <summary>
    /// Backward of y = (x - rm)·g/sqrt(rv + eps) + b with fixed running statistics: dbeta = Σdy and
    /// dgamma = Σdy·x̂ come from the training backward's reductions given the running mean and
    /// 1/sqrt(rv + eps) (its dx, which assumes batch statistics, is discarded); dx = dy·g/sqrt(rv + eps) is
    /// the eval forward applied to dy with zero mean and bias.
    /// </summary>
    private Tensor BackwardFrozen(Tensor dy)
    {
        float[] var = Device.Download(RunningVar.Value);
        float[] inv = Array.ConvertAll(var, v => (float)(1.0 / Math.Sqrt(v + (double)Eps)));
        var invStd = _invStd.Get(Device, Channels);
        invStd.CopyFromCPU(Device.Stream, inv);
        int n = _x[0], hw = _x[2] * _x[3];
        BatchNorm2d.Backward(Device, _x.View, dy.View, Weight.Value, RunningMean.Value, invStd, _discard.Get(Device, _x.Length), Weight.Grad, Bias.Grad, n, Channels, hw);
        RaiseGradientReady(Bias);
        RaiseGradientReady(Weight);
        var zeros = _zeros.Get(Device, Channels);
        Elementwise.Fill(Device, zeros, 0f);
        Tensor dx = _dx.Tensor(Device, _x.Shape);
        BatchNorm2d.ForwardEval(Device, dy.View, Weight.Value, zeros, zeros, RunningVar.Value, dx.View, n, Channels, hw, Eps);
        return dx;
    }

    public override void Dispose()
    {
        _discard.Dispose();
        _zeros.Dispose();
        _y.Dispose();
        _dx.Dispose();
        _mean.Dispose();
        _invStd.Dispose();
        base.Dispose();
    }
}
