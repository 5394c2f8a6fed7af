using Engine.Kernels;
using ILGPU;
using Device = Engine.Kernels.Device;

namespace Engine.Nn;

/// <summary>nn.CrossEntropyLoss() (mean reduction) as one fused softmax + NLL kernel, plus the batch's correct-prediction count.</summary>
public sealed class CrossEntropyLoss : IDisposable
{
    private readonly Device _device;
    private readonly Scratch<float> _probs = new(), _loss = new(), _dlogits = new();
    private readonly Scratch<int> _correct = new();
    private ArrayView<int> _labels;
    private int _n, _classes;

    public CrossEntropyLoss(Device device) => _device = device;

    /// <summary>Launches the loss of <paramref name="logits"/> [N, classes] against <paramref name="labels"/> [N]; read it with <see cref="Read"/>.</summary>
    public void Forward(Tensor logits, ArrayView<int> labels)
    {
        if (logits.Rank != 2) throw new ArgumentException($"CrossEntropyLoss expects [N, classes] logits, got {logits}.");
        if (labels.Length != logits[0]) throw new ArgumentException($"CrossEntropyLoss: {labels.Length} labels for {logits[0]} rows.");
        _n = logits[0];
        _classes = logits[1];
        _labels = labels;
        SoftmaxCrossEntropy.Forward(_device, logits.View, labels, _probs.Get(_device, logits.Length), _loss.Get(_device, 1), _correct.Get(_device, 1), _n, _classes);
    }

    /// <summary>dL/dlogits; <paramref name="scale"/> is 1/N for this batch's mean, or 1/global-N when the batch is a DP shard.</summary>
    public Tensor Backward(float? scale = null)
    {
        Tensor d = _dlogits.Tensor(_device, _n, _classes);
        SoftmaxCrossEntropy.Backward(_device, _probs.Get(_device, (long)_n * _classes), _labels, d.View, _n, _classes, scale ?? 1f / _n);
        return d;
    }

    /// <summary>The last forward's mean loss and number of correct predictions (synchronises the stream).</summary>
    public (float Loss, int Correct) Read()
    {
        float loss = _device.Download(_loss.Get(_device, 1))[0];
        int correct = _device.Download(_correct.Get(_device, 1))[0];
        return (loss, correct);
    }

    /// <summary>Device views of the last loss [1] and correct count [1], for callers that gather them without a host round trip.</summary>
    public ArrayView<float> LossView => _loss.Get(_device, 1);
    public ArrayView<int> CorrectView => _correct.Get(_device, 1);

    public void Dispose()
    {
        _probs.Dispose();
        _loss.Dispose();
        _dlogits.Dispose();
        _correct.Dispose();
    }
}
