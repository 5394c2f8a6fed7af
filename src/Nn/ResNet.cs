using Engine.Nn.Layers;
using Device = Engine.Kernels.Device;

namespace Engine.Nn;

/// <summary>Which ResNet to build: torchvision's depth, stem and base width.</summary>
/// <param name="Depth">18 or 34 (BasicBlock counts [2,2,2,2] or [3,4,6,3]).</param>
/// <param name="Stem">"imagenet" (7x7/2 conv + 3x3/2 max-pool, torchvision's) or "cifar" (3x3/1 conv, no pool).</param>
/// <param name="Width">Base channels (64 in torchvision); smaller for quick CPU runs.</param>
public sealed record ResNetConfig(int Depth = 34, string Stem = "imagenet", int Width = 64, int Classes = 10, int InChannels = 3)
{
    /// <summary>Train with every BatchNorm in eval mode (running statistics, not updated); see <see cref="Layers.BatchNorm2dLayer.Frozen"/>.</summary>
    public bool FreezeBatchNorm { get; init; }

    public static ResNetConfig Parse(string model, string stem, int width, int classes = 10)
    {
        int depth = model.ToLowerInvariant() switch
        {
            "resnet18" => 18,
            "resnet34" => 34,
            _ => throw new ArgumentException($"Unknown model '{model}': expected resnet18 or resnet34."),
        };
        string s = stem.ToLowerInvariant();
        if (s is not ("imagenet" or "cifar")) throw new ArgumentException($"Unknown stem '{stem}': expected imagenet or cifar.");
        if (width < 1) throw new ArgumentException($"--width must be at least 1, got {width}.");
        return new ResNetConfig(depth, s, width, classes);
    }

    public int[] Blocks => Depth switch
    {
        18 => new[] { 2, 2, 2, 2 },
        34 => new[] { 3, 4, 6, 3 },
        _ => throw new ArgumentException($"Unsupported depth {Depth}."),
    };

    public string ModelName => $"resnet{Depth}";
}

/// <summary>
/// torchvision's resnet18/resnet34 (BasicBlock), with its module names, parameter shapes and
/// initialisation. All state lives in one <see cref="ParameterStore"/>. Backward is an explicit
/// reverse walk over the modules.
/// </summary>
public sealed class ResNet : Module
{
    private readonly List<Module> _forwardOrder = new();
    private readonly Conv2dLayer _conv1;

    /// <param name="layout">How the flat parameter buffers are cut and which are held (DDP buckets, ZeRO shards, FSDP units); one unpadded segment when null.</param>
    public ResNet(Device device, ResNetConfig config, Func<IReadOnlyList<Parameter>, StoreLayout>? layout = null) : base(device, "")
    {
        Config = config;
        Store = new ParameterStore();
        int w = config.Width;
        bool imagenet = config.Stem == "imagenet";
        _conv1 = imagenet
            ? new Conv2dLayer(device, Store, "conv1", config.InChannels, w, 7, 2, 3)
            : new Conv2dLayer(device, Store, "conv1", config.InChannels, w, 3, 1, 1);
        _forwardOrder.Add(_conv1);
        _forwardOrder.Add(new BatchNorm2dLayer(device, Store, "bn1", w) { FuseRelu = true }); // the stem's relu runs inside bn1
        if (imagenet) _forwardOrder.Add(new MaxPool2dLayer(device, "maxpool"));
        int inPlanes = w;
        int[] blocks = config.Blocks;
        for (int layer = 0; layer < 4; layer++)
        {
            int planes = w << layer;
            for (int b = 0; b < blocks[layer]; b++)
            {
                int stride = layer > 0 && b == 0 ? 2 : 1;
                _forwardOrder.Add(new BasicBlock(device, Store, $"layer{layer + 1}.{b}", inPlanes, planes, stride));
                inPlanes = planes;
            }
        }
        _forwardOrder.Add(new AdaptiveAvgPoolLayer(device, "avgpool"));
        _forwardOrder.Add(new LinearLayer(device, Store, "fc", inPlanes, config.Classes));
        foreach (Module m in _forwardOrder) Adopt(m);
        Store.Build(device, layout);
        if (config.FreezeBatchNorm)
        {
            foreach (BatchNorm2dLayer bn in BatchNorms()) bn.Frozen = true;
        }
    }

    public ResNetConfig Config { get; }
    public ParameterStore Store { get; }
    public IReadOnlyList<Module> Modules => _forwardOrder;

    public void Initialize(int seed) => Store.Initialize(Device, seed);

    public IEnumerable<BatchNorm2dLayer> BatchNorms()
    {
        foreach (Module m in _forwardOrder)
        {
            if (m is BatchNorm2dLayer bn) yield return bn;
            if (m is BasicBlock b) foreach (Module c in b.Children()) if (c is BatchNorm2dLayer cb) yield return cb;
        }
    }

    public override long ForwardFlops => _forwardOrder.Sum(m => m.ForwardFlops);

    /// <summary>
    /// Called before and after every top-level module's forward and backward (PyTorch's module pre- and post-hooks),
    /// with the module and whether it is the backward pass: FSDP gathers a unit's parameters there and frees them.
    /// </summary>
    public event Action<Module, bool>? BeforeModule, AfterModule;

    public override Tensor Forward(Tensor x, bool training)
    {
        ExpectRank(x, 4, "ResNet");
        foreach (Module m in _forwardOrder)
        {
            using var range = Engine.Kernels.Nvtx.Enabled ? Engine.Kernels.Nvtx.Range(m.Name + " forward") : default;
            BeforeModule?.Invoke(m, false);
            x = m.Forward(x, training);
            AfterModule?.Invoke(m, false);
        }
        return x;
    }

    public override Tensor Backward(Tensor dy)
    {
        for (int i = _forwardOrder.Count - 1; i > 0; i--)
        {
            using var range = Engine.Kernels.Nvtx.Enabled ? Engine.Kernels.Nvtx.Range(_forwardOrder[i].Name + " backward") : default;
            BeforeModule?.Invoke(_forwardOrder[i], true);
            dy = _forwardOrder[i].Backward(dy);
            AfterModule?.Invoke(_forwardOrder[i], true);
        }
        using (Engine.Kernels.Nvtx.Enabled ? Engine.Kernels.Nvtx.Range("conv1 backward") : default)
        {
            BeforeModule?.Invoke(_conv1, true);
            _conv1.BackwardWeightOnly(dy);
            AfterModule?.Invoke(_conv1, true);
        }
        return default;
    }

    public override void Dispose()
    {
        foreach (Module m in _forwardOrder) m.Dispose();
        Store.Dispose();
        base.Dispose();
    }
}
