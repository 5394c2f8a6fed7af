using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Nn;

namespace Engine.Runner.Bench;

/// <summary>A shape and how many times one training step launches an op at it.</summary>
public readonly record struct Counted<T>(T Shape, int PerStep);

/// <summary>
/// A conv shape of the model: forward and backward-weight launches per step, and backward-data
/// launches (fewer when the stem has this shape: its input gradient is never computed).
/// </summary>
public readonly record struct ConvUse(Conv2dShape Shape, int PerStep, int BackwardDataPerStep);

/// <summary>One op launch of a training step at one shape, named as the kernel profiler names it.</summary>
public readonly record struct StepOp(string Op, string Shape, int PerStep, Cost Cost);

/// <summary>
/// The distinct layer shapes of a ResNet's training step (augment, forward, loss, backward, SGD) at a
/// batch size, computed from <see cref="ResNetConfig"/> the way <see cref="ResNet"/> builds its layers,
/// with how many times a step launches each op at each shape. A test checks them against a real
/// step's layers and kernel-profiler counts.
/// </summary>
public sealed record ModelShapes(
    ResNetConfig Config,
    int Batch,
    IReadOnlyList<ConvUse> Convs,
    IReadOnlyList<Counted<BatchNormShape>> BatchNorms,
    IReadOnlyList<Counted<BatchNormShape>> BatchNormRelus,
    IReadOnlyList<Counted<BatchNormShape>> BatchNormAddRelus,
    IReadOnlyList<Counted<long>> Relus,
    IReadOnlyList<Counted<long>> Adds,
    Pool2dShape? MaxPool,
    (int NC, int HW) AvgPool,
    LinearShape Linear,
    long Parameters,
    AugmentShape Augment)
{
    /// <summary>CIFAR-10 and padded Fashion-MNIST images: 32x32.</summary>
    public const int ImageSize = 32;

    /// <summary>The random crop's zero padding (the seed's RandomCrop(32, padding=4)).</summary>
    public const int CropPadding = 4;

    public static ModelShapes FromConfig(ResNetConfig config, int batch)
    {
        if (batch < 1) throw new ArgumentException($"--batch-size must be at least 1, got {batch}.");
        var convs = new List<ConvUse>();
        var bns = new List<Counted<BatchNormShape>>();
        var bnRelus = new List<Counted<BatchNormShape>>(); // bn -> relu pairs, one fused op (BatchNorm2dLayer.FuseRelu)
        var bnAddRelus = new List<Counted<BatchNormShape>>(); // bn2 -> residual add -> relu, one fused op (BatchNorm2dLayer.ForwardAddRelu)
        var relus = new List<Counted<long>>(); // none left outside batch norm: every ReLU rides on a bn
        var adds = new List<Counted<long>>();
        long parameters = 0;
        int n = batch, c = config.InChannels, hw = ImageSize;

        // A conv followed by its batch norm (every conv of a ResNet is), with the ReLU fused into it when
        // one follows; returns the output edge.
        int ConvBn(int inC, int outC, int k, int stride, int pad, int edge, bool backwardData, bool relu = false, bool addRelu = false)
        {
            var s = new Conv2dShape(n, inC, edge, edge, outC, k, k, stride, pad);
            s.Validate();
            AddConv(convs, s, backwardData);
            Add(addRelu ? bnAddRelus : relu ? bnRelus : bns, new BatchNormShape(n, outC, s.OutH * s.OutW));
            parameters += s.WeightLength + 2L * outC;
            return s.OutH;
        }

        bool imagenet = config.Stem == "imagenet";
        int w = config.Width;
        hw = imagenet ? ConvBn(c, w, 7, 2, 3, hw, backwardData: false, relu: true) : ConvBn(c, w, 3, 1, 1, hw, backwardData: false, relu: true);
        Pool2dShape? pool = null;
        if (imagenet)
        {
            var p = new Pool2dShape(n, w, hw, hw, 3, 2, 1);
            p.Validate();
            pool = p;
            hw = p.OutH;
        }
        int inPlanes = w;
        int[] blocks = config.Blocks;
        for (int layer = 0; layer < 4; layer++)
        {
            int planes = w << layer;
            for (int b = 0; b < blocks[layer]; b++)
            {
                int stride = layer > 0 && b == 0 ? 2 : 1;
                int outEdge = ConvBn(inPlanes, planes, 3, stride, 1, hw, backwardData: true, relu: true);
                ConvBn(planes, planes, 3, 1, 1, outEdge, backwardData: true, addRelu: true); // the residual sum and relu ride on bn2
                if (stride != 1 || inPlanes != planes) ConvBn(inPlanes, planes, 1, stride, 0, hw, backwardData: true);
                Add(adds, (long)n * inPlanes * hw * hw); // backward: the main and identity branches' input gradients
                hw = outEdge;
                inPlanes = planes;
            }
        }
        var linear = new LinearShape(n, inPlanes, config.Classes);
        parameters += (long)inPlanes * config.Classes + config.Classes;
        return new ModelShapes(config, batch, convs, bns, bnRelus, bnAddRelus, relus, adds, pool, (n * inPlanes, hw * hw), linear, parameters,
            new AugmentShape(n, config.InChannels, ImageSize, ImageSize, CropPadding));
    }

    private static void Add<T>(List<Counted<T>> list, T shape, int times = 1)
    {
        int i = list.FindIndex(e => EqualityComparer<T>.Default.Equals(e.Shape, shape));
        if (i < 0) list.Add(new Counted<T>(shape, times));
        else list[i] = list[i] with { PerStep = list[i].PerStep + times };
    }

    private static void AddConv(List<ConvUse> list, Conv2dShape shape, bool backwardData)
    {
        int i = list.FindIndex(e => e.Shape == shape);
        int data = backwardData ? 1 : 0;
        if (i < 0) list.Add(new ConvUse(shape, 1, data));
        else list[i] = list[i] with { PerStep = list[i].PerStep + 1, BackwardDataPerStep = list[i].BackwardDataPerStep + data };
    }

    public string Describe => $"{Config.ModelName} stem {Config.Stem} width {Config.Width}, batch {Batch}, {ImageSize}x{ImageSize} images, {Parameters:N0} parameters";

    /// <summary>Every op launch of one training step, with the kernel profiler's names and costs.</summary>
    public IEnumerable<StepOp> StepOps()
    {
        yield return new("augment", Augment.ToString(), 1, OpCost.Augment(Augment.Length));
        foreach (ConvUse u in Convs)
        {
            yield return new("conv2d_fwd", u.Shape.ToString(), u.PerStep, OpCost.Conv2d(u.Shape));
            if (u.BackwardDataPerStep > 0) yield return new("conv2d_bwd_data", u.Shape.ToString(), u.BackwardDataPerStep, OpCost.Conv2d(u.Shape));
            yield return new("conv2d_bwd_weight", u.Shape.ToString(), u.PerStep, OpCost.Conv2d(u.Shape));
        }
        foreach (var b in BatchNorms)
        {
            yield return new("batchnorm_fwd_train", b.Shape.ToString(), b.PerStep, OpCost.BatchNormTrain(b.Shape.Length));
            yield return new("batchnorm_bwd", b.Shape.ToString(), b.PerStep, OpCost.BatchNormBackward(b.Shape.Length));
        }
        foreach (var b in BatchNormRelus)
        {
            yield return new("batchnorm_relu_fwd_train", b.Shape.ToString(), b.PerStep, OpCost.BatchNormReluTrain(b.Shape.Length));
            yield return new("batchnorm_relu_bwd", b.Shape.ToString(), b.PerStep, OpCost.BatchNormReluBackward(b.Shape.Length));
        }
        foreach (var b in BatchNormAddRelus)
        {
            yield return new("batchnorm_add_relu_fwd_train", b.Shape.ToString(), b.PerStep, OpCost.BatchNormAddReluTrain(b.Shape.Length));
            yield return new("batchnorm_add_relu_bwd", b.Shape.ToString(), b.PerStep, OpCost.BatchNormAddReluBackward(b.Shape.Length));
        }
        foreach (var r in Relus)
        {
            yield return new("relu_fwd", $"n={r.Shape}", r.PerStep, OpCost.ReluForward(r.Shape));
            yield return new("relu_bwd", $"n={r.Shape}", r.PerStep, OpCost.ReluBackward(r.Shape));
        }
        foreach (var a in Adds) yield return new("add_fwd", $"n={a.Shape}", a.PerStep, OpCost.Binary(a.Shape));
        if (MaxPool is Pool2dShape p)
        {
            yield return new("maxpool_fwd", p.ToString(), 1, OpCost.MaxPoolForward(p));
            yield return new("maxpool_bwd", p.ToString(), 1, OpCost.MaxPoolBackward(p));
        }
        string avg = $"nc={AvgPool.NC} hw={AvgPool.HW}";
        yield return new("avgpool_fwd", avg, 1, OpCost.AvgPool(AvgPool.NC, AvgPool.HW));
        yield return new("avgpool_bwd", avg, 1, OpCost.AvgPool(AvgPool.NC, AvgPool.HW));
        yield return new("linear_fwd", Linear.ToString(), 1, OpCost.LinearForward(Linear.N, Linear.InF, Linear.OutF));
        yield return new("linear_bwd", Linear.ToString(), 1, OpCost.LinearBackward(Linear.N, Linear.InF, Linear.OutF));
        string loss = $"n={Linear.N} classes={Linear.OutF}";
        yield return new("softmax_xent_fwd", loss, 1, OpCost.SoftmaxCrossEntropy(Linear.N, Linear.OutF));
        yield return new("softmax_xent_bwd", loss, 1, OpCost.SoftmaxCrossEntropy(Linear.N, Linear.OutF));
        yield return new("sgd_step", $"n={Parameters}", 1, OpCost.Sgd(Parameters));
    }
}
