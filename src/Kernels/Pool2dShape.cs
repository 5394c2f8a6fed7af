namespace Engine.Kernels;

/// <summary>
/// Shape of a 2-D pooling over an NCHW tensor: a square <paramref name="Kernel"/> window moved by
/// <paramref name="Stride"/> over the input padded by <paramref name="Pad"/> on every side
/// (PyTorch's floor mode, dilation 1).
/// </summary>
public readonly record struct Pool2dShape(int N, int C, int H, int W, int Kernel, int Stride, int Pad)
{
    /// <summary>Output height: (H + 2*Pad - Kernel)/Stride + 1.</summary>
    public int OutH => (H + 2 * Pad - Kernel) / Stride + 1;

    /// <summary>Output width: (W + 2*Pad - Kernel)/Stride + 1.</summary>
    public int OutW => (W + 2 * Pad - Kernel) / Stride + 1;

    /// <summary>N*C*H*W.</summary>
    public int InputLength => N * C * H * W;

    /// <summary>N*C*OutH*OutW.</summary>
    public int OutputLength => N * C * OutH * OutW;

    /// <summary>Throws <see cref="ArgumentException"/> unless the shape is one PyTorch accepts and its sizes fit in an int.</summary>
    public void Validate()
    {
        if (N <= 0 || C <= 0 || H <= 0 || W <= 0)
            throw new ArgumentException($"Pool2dShape: N, C, H, W must be positive, got N={N} C={C} H={H} W={W}.");
        if (Kernel <= 0 || Stride <= 0)
            throw new ArgumentException($"Pool2dShape: kernel and stride must be positive, got kernel={Kernel} stride={Stride}.");
        if (Pad < 0 || Pad > Kernel / 2)
            throw new ArgumentException($"Pool2dShape: pad must be between 0 and half the kernel ({Kernel / 2}), got {Pad}.");
        if (H + 2 * Pad < Kernel || W + 2 * Pad < Kernel)
            throw new ArgumentException($"Pool2dShape: the {Kernel}x{Kernel} window does not fit the padded {H}x{W} input (pad {Pad}).");
        if ((long)N * C * H * W > int.MaxValue)
            throw new ArgumentException($"Pool2dShape: {N}x{C}x{H}x{W} has more than int.MaxValue elements.");
    }

    public override string ToString() => $"{N}x{C}x{H}x{W} k{Kernel} s{Stride} p{Pad} -> {OutH}x{OutW}";
}
