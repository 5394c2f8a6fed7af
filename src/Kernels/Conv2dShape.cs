namespace Engine.Kernels;

/// <summary>
/// The geometry of one 2-D convolution in NCHW layout without bias, groups or dilation
/// (the convolutions of torchvision's ResNet): input [N, C, H, W], weight [K, C, R, S],
/// output [N, K, OutH, OutW].
/// </summary>
/// <param name="N">Batch size.</param>
/// <param name="C">Input channels.</param>
/// <param name="H">Input height.</param>
/// <param name="W">Input width.</param>
/// <param name="K">Output channels.</param>
/// <param name="R">Kernel height.</param>
/// <param name="S">Kernel width.</param>
/// <param name="Stride">Stride along both spatial axes.</param>
/// <param name="Pad">Zero padding on every side.</param>
public readonly record struct Conv2dShape(int N, int C, int H, int W, int K, int R, int S, int Stride, int Pad)
{
    public int OutH => (H + 2 * Pad - R) / Stride + 1;
    public int OutW => (W + 2 * Pad - S) / Stride + 1;

    public long InputLength => (long)N * C * H * W;
    public long WeightLength => (long)K * C * R * S;
    public long OutputLength => (long)N * K * OutH * OutW;

    /// <summary>Floating-point operations of the forward pass: two per multiply-add.</summary>
    public long Flops => 2L * N * K * OutH * OutW * C * R * S;

    public override string ToString()
        => $"N={N} C={C} H={H} W={W} K={K} R={R} S={S} stride={Stride} pad={Pad}";

    /// <summary>Throws unless every size is positive, padding is non-negative, the output is not empty and every tensor fits 32-bit indexing.</summary>
    /// <exception cref="ArgumentException">The shape cannot describe a convolution.</exception>
    public void Validate()
    {
        if (N <= 0 || C <= 0 || H <= 0 || W <= 0 || K <= 0 || R <= 0 || S <= 0)
        {
            throw new ArgumentException($"Conv2d: every size must be positive, got {this}.");
        }
        if (Stride <= 0)
        {
            throw new ArgumentException($"Conv2d: stride must be positive, got {Stride} in {this}.");
        }
        if (Pad < 0)
        {
            throw new ArgumentException($"Conv2d: padding must be non-negative, got {Pad} in {this}.");
        }
        if (H + 2 * Pad < R || W + 2 * Pad < S)
        {
            throw new ArgumentException(
                $"Conv2d: the {R}x{S} kernel does not fit the padded {H + 2 * Pad}x{W + 2 * Pad} input, so the output is empty ({this}).");
        }
        if (InputLength > int.MaxValue || WeightLength > int.MaxValue || OutputLength > int.MaxValue)
        {
            throw new ArgumentException($"Conv2d: a tensor of {this} has more than {int.MaxValue} elements; the kernels index with 32-bit integers.");
        }
    }
}
