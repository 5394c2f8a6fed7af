using Engine.Kernels;
using Engine.Kernels.Cases;
using ILGPU;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Bench;

/// <summary>
/// One numbered version of an op's kernel: what it is, its number (v1, v2, ...) and its launcher; a variant
/// with <c>CannotRunOn</c> is listed as skipped, with its reason, on a device it names a reason for, instead of run.
/// </summary>
public sealed record Variant<TLauncher>(string Name, int Version, TLauncher Launch, Precision Precision = Precision.Fp32, Func<Device, string?>? CannotRunOn = null)
    where TLauncher : Delegate
{
    public string Label => $"v{Version} {Name}";
}

/// <summary>
/// Every op of a training step and the versions of its kernel, kept side by side (llm.c's dev/cuda):
/// the bench validates and times each entry at the model's shapes and marks the fastest correct one
/// per op and shape. To try a new kernel, write it with the op's launcher signature and add it here
/// (or to a table built in a test) as the next version; the engine's layers call only the one wired
/// into src/Kernels.
/// </summary>
public sealed class KernelVariants
{
    public List<Variant<ConvLauncher>> ConvForward { get; } =
    [
        new("implicit GEMM, shared-memory tiles", 1, Conv2d.Forward),
        new("implicit GEMM, two shared buffers, one barrier per slab", 2, Conv2d.ForwardDoubleBuffered),
        new("TF32 mma.sync, accumulators in shared memory", 3, Conv2dTf32.ForwardSharedAccumulators, Precision.Tf32, Conv2dTf32.CannotRunOn),
        new("TF32 mma.sync, accumulators in registers", 4, Conv2dTf32.Forward, Precision.Tf32, Conv2dTf32.CannotRunOn),
    ];
    public List<Variant<ConvLauncher>> ConvBackwardData { get; } =
    [
        new("gather GEMM, shared-memory tiles", 1, Conv2d.BackwardDataGather),
        new("stride-phase GEMMs, one launch per phase, a tap per slab", 2, Conv2d.BackwardDataPhased),
        new("stride-phase GEMMs, two shared buffers, one barrier per slab", 3, Conv2d.BackwardDataPhasedDoubleBuffered),
    ];
    public List<Variant<ConvLauncher>> ConvBackwardWeight { get; } =
    [
        new("split-K GEMM + ordered sum", 1, Conv2d.BackwardWeight),
        new("split-K GEMM, two shared buffers, one barrier per slab", 2, Conv2d.BackwardWeightDoubleBuffered),
    ];
    // Batch norm's element-wise passes (normalise, dx) have float4 versions inside the same launchers,
    // taken when hw % 4 == 0; the scalar variants run the launchers under Float4Dispatch.Suspend().
    public List<Variant<BatchNormForwardLauncher>> BatchNormForward { get; } =
    [
        new("partial stats, finalize, normalize", 1, (dev, x, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps) =>
        {
            using var scalar = Float4Dispatch.Suspend();
            BatchNorm2d.ForwardTrain(dev, x, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps);
        }),
        new("partial stats, finalize, float4 normalize", 2, BatchNorm2d.ForwardTrain),
    ];
    public List<Variant<BatchNormBackwardLauncher>> BatchNormBackward { get; } =
    [
        new("partial sums, finalize, dx", 1, (dev, x, dy, g, mean, inv, dx, dg, db, n, c, hw) =>
        {
            using var scalar = Float4Dispatch.Suspend();
            BatchNorm2d.Backward(dev, x, dy, g, mean, inv, dx, dg, db, n, c, hw);
        }),
        new("partial sums, finalize, float4 dx", 2, BatchNorm2d.Backward),
    ];
    /// <summary>The bn -> relu pairs (stem and every block's bn1): v1 runs the two ops' own kernels, v2 the fused ones.</summary>
    public List<Variant<BatchNormForwardLauncher>> BatchNormReluForward { get; } =
    [
        new("batchnorm_fwd_train then relu_fwd in place", 1, (dev, x, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps) =>
        {
            BatchNorm2d.ForwardTrain(dev, x, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps);
            Relu.Forward(dev, y.SubView(0, (long)n * c * hw), y.SubView(0, (long)n * c * hw));
        }),
        new("fused: relu in the normalize pass", 2, (dev, x, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps) =>
        {
            using var scalar = Float4Dispatch.Suspend();
            BatchNorm2d.ForwardTrainRelu(dev, x, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps);
        }),
        new("fused, float4 normalize pass", 3, BatchNorm2d.ForwardTrainRelu),
    ];

    public List<Variant<BatchNormReluBackwardLauncher>> BatchNormReluBackward { get; } =
    [
        new("relu_bwd in place then batchnorm_bwd", 1, (dev, x, y, dy, g, mean, inv, dx, dg, db, n, c, hw) =>
        {
            long len = (long)n * c * hw;
            Relu.Backward(dev, y.SubView(0, len), dy.SubView(0, len), dy.SubView(0, len));
            BatchNorm2d.Backward(dev, x, dy, g, mean, inv, dx, dg, db, n, c, hw);
        }),
        new("fused: dy masked by y inside the sums and dx passes", 2, (dev, x, y, dy, g, mean, inv, dx, dg, db, n, c, hw) =>
        {
            using var scalar = Float4Dispatch.Suspend();
            BatchNorm2d.BackwardRelu(dev, x, y, dy, g, mean, inv, dx, dg, db, n, c, hw);
        }),
        new("fused, float4 dx pass", 3, BatchNorm2d.BackwardRelu),
    ];

    /// <summary>Every block's bn2 -> residual add -> relu: v1 runs the three ops' own kernels, v2 the fused ones.</summary>
    public List<Variant<BatchNormAddReluForwardLauncher>> BatchNormAddReluForward { get; } =
    [
        new("batchnorm_fwd_train, add_fwd, relu_fwd (in place)", 1, (dev, x, id, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps) =>
        {
            long len = (long)n * c * hw;
            BatchNorm2d.ForwardTrain(dev, x, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps);
            Elementwise.Add(dev, y.SubView(0, len), id.SubView(0, len), y.SubView(0, len));
            Relu.Forward(dev, y.SubView(0, len), y.SubView(0, len));
        }),
        new("fused: add and relu in the normalize pass", 2, (dev, x, id, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps) =>
        {
            using var scalar = Float4Dispatch.Suspend();
            BatchNorm2d.ForwardTrainAddRelu(dev, x, id, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps);
        }),
        new("fused, float4 normalize pass", 3, BatchNorm2d.ForwardTrainAddRelu),
    ];

    public List<Variant<BatchNormAddReluBackwardLauncher>> BatchNormAddReluBackward { get; } =
    [
        new("relu_bwd into dIdentity then batchnorm_bwd of it", 1, (dev, x, y, dy, g, mean, inv, dx, di, dg, db, n, c, hw) =>
        {
            long len = (long)n * c * hw;
            Relu.Backward(dev, y.SubView(0, len), dy.SubView(0, len), di.SubView(0, len));
            BatchNorm2d.Backward(dev, x, di, g, mean, inv, dx, dg, db, n, c, hw);
        }),
        new("fused: dy masked by y inside the sums and dx passes, dIdentity written by the dx pass", 2, (dev, x, y, dy, g, mean, inv, dx, di, dg, db, n, c, hw) =>
        {
            using var scalar = Float4Dispatch.Suspend();
            BatchNorm2d.BackwardAddRelu(dev, x, y, dy, g, mean, inv, dx, di, dg, db, n, c, hw);
        }),
        new("fused, float4 dx pass", 3, BatchNorm2d.BackwardAddRelu),
    ];

    // The memory-bound element-wise ops: v1 moves one float per load, v2 a float4 (16 bytes); the
    // engine's launchers take v2 whenever every view starts on a 16-byte boundary.
    public List<Variant<UnaryLauncher>> ReluForward { get; } = [new("grid-stride, one float per load", 1, Relu.ForwardScalar), new("grid-stride, float4 loads", 2, Relu.ForwardFloat4)];
    public List<Variant<BinaryLauncher>> ReluBackward { get; } = [new("grid-stride, one float per load", 1, Relu.BackwardScalar), new("grid-stride, float4 loads", 2, Relu.BackwardFloat4)];
    public List<Variant<BinaryLauncher>> Add { get; } = [new("grid-stride, one float per load", 1, Elementwise.AddScalar), new("grid-stride, float4 loads", 2, Elementwise.AddFloat4)];
    public List<Variant<MaxPoolForwardLauncher>> MaxPoolForward { get; } = [new("grid-stride over outputs", 1, MaxPool2d.Forward)];
    public List<Variant<MaxPoolBackwardLauncher>> MaxPoolBackward { get; } = [new("grid-stride over inputs, gather", 1, MaxPool2d.Backward)];
    public List<Variant<AvgPoolLauncher>> AvgPoolForward { get; } = [new("grid-stride over planes", 1, AdaptiveAvgPool.Forward)];
    public List<Variant<AvgPoolLauncher>> AvgPoolBackward { get; } = [new("grid-stride", 1, AdaptiveAvgPool.Backward)];
    public List<Variant<LinearForwardLauncher>> LinearForward { get; } = [new("tiled GEMM", 1, Linear.Forward)];
    public List<Variant<LinearBackwardLauncher>> LinearBackward { get; } = [new("tiled GEMMs + column sums", 1, Linear.Backward)];
    public List<Variant<LossForwardLauncher>> LossForward { get; } = [new("row per thread, group partials", 1, SoftmaxCrossEntropy.Forward)];
    public List<Variant<LossBackwardLauncher>> LossBackward { get; } = [new("grid-stride", 1, SoftmaxCrossEntropy.Backward)];
    public List<Variant<SgdLauncher>> Sgd { get; } =
        [new("grid-stride, one float per load", 1, Engine.Kernels.Sgd.StepScalar), new("grid-stride, float4 loads", 2, Engine.Kernels.Sgd.StepFloat4)];
    public List<Variant<AugmentLauncher>> Augment { get; } = [new("grid-stride crop, flip, normalize", 1, Engine.Kernels.Augment.Apply)];
}
