namespace Engine.Kernels;

/// <summary>Floating-point operations and DRAM bytes of one launch: the floor a kernel's time is compared with.</summary>
public readonly record struct Cost(long Flops, long Bytes);

/// <summary>
/// Hand counts of each op's work. FLOPs count a multiply-add as 2; bytes count each operand read or
/// written once per pass the kernel makes over it (fp32 = 4 bytes), ignoring caches. Memory-bound ops
/// have Flops 0 and are judged by GB/s.
/// </summary>
public static class OpCost
{
    private const long F = sizeof(float);

    /// <summary>Every conv pass is one GEMM of the same size: 2·N·K·OH·OW·C·R·S FLOPs, reading and writing x, w and y once.</summary>
    public static Cost Conv2d(in Conv2dShape s) => new(s.Flops, F * (s.InputLength + s.WeightLength + s.OutputLength));

    /// <summary>Statistics pass reads x; normalise pass reads x and writes y.</summary>
    public static Cost BatchNormTrain(long elements) => new(0, F * 3 * elements);

    public static Cost BatchNormEval(long elements) => new(0, F * 2 * elements);

    /// <summary>Sums pass reads x and dy; dx pass reads x and dy and writes dx.</summary>
    public static Cost BatchNormBackward(long elements) => new(0, F * 5 * elements);

    /// <summary>BN + ReLU in one op: the same passes as <see cref="BatchNormTrain"/>; the ReLU rides on the normalise pass.</summary>
    public static Cost BatchNormReluTrain(long elements) => new(0, F * 3 * elements);

    public static Cost BatchNormReluEval(long elements) => new(0, F * 2 * elements);

    /// <summary>Sums pass reads x, y and dy; dx pass reads x, y and dy and writes dx (the mask needs y in both).</summary>
    public static Cost BatchNormReluBackward(long elements) => new(0, F * 7 * elements);

    /// <summary>BN + residual add + ReLU in one op: statistics pass reads x; normalise pass reads x and identity, writes y.</summary>
    public static Cost BatchNormAddReluTrain(long elements) => new(0, F * 4 * elements);

    public static Cost BatchNormAddReluEval(long elements) => new(0, F * 3 * elements);

    /// <summary>Sums pass reads x, y and dy; dx pass reads x, y and dy and writes dx and d(identity).</summary>
    public static Cost BatchNormAddReluBackward(long elements) => new(0, F * 8 * elements);

    public static Cost ReluForward(long elements) => new(0, F * 2 * elements);

    public static Cost ReluBackward(long elements) => new(0, F * 3 * elements);

    /// <summary>Reads two operands, writes one (add, accumulate).</summary>
    public static Cost Binary(long elements) => new(0, F * 3 * elements);

    /// <summary>Reads and writes one operand (scale) or only writes it (fill: pass reads 0).</summary>
    public static Cost Unary(long elements, int reads) => new(0, F * (1 + reads) * elements);

    /// <summary>Reads x, writes y and the argmax indices.</summary>
    public static Cost MaxPoolForward(in Pool2dShape s) => new(0, F * (s.InputLength + 2 * s.OutputLength));

    /// <summary>Reads dy and argmax, writes dx.</summary>
    public static Cost MaxPoolBackward(in Pool2dShape s) => new(0, F * (2 * s.OutputLength + s.InputLength));

    public static Cost AvgPool(long nc, long hw) => new(0, F * (nc * hw + nc));

    /// <summary>y = x·wᵀ + b: 2·n·in·out FLOPs.</summary>
    public static Cost LinearForward(long n, long inF, long outF) => new(2 * n * inF * outF, F * (n * inF + outF * inF + outF + n * outF));

    /// <summary>dx = dy·w and dw = dyᵀ·x (2 GEMMs), db = column sums of dy.</summary>
    public static Cost LinearBackward(long n, long inF, long outF) => new(4 * n * inF * outF + n * outF, F * (2 * n * inF + 2 * outF * inF + n * outF + outF));

    /// <summary>Reads logits (and labels), writes probabilities; backward reads probabilities, writes dlogits.</summary>
    public static Cost SoftmaxCrossEntropy(long n, long classes) => new(0, F * (2 * n * classes + n));

    /// <summary>Reads parameter, gradient and momentum; writes parameter and momentum.</summary>
    public static Cost Sgd(long elements) => new(0, F * 5 * elements);

    /// <summary>Reads the uint8 images, writes fp32 tensors.</summary>
    public static Cost Augment(long elements) => new(0, elements * (1 + F));
}
