namespace Engine.Kernels.Cases;

/// <summary>Batch-norm geometry: n images of c channels with hw pixels each.</summary>
public readonly record struct BatchNormShape(int N, int C, int HW)
{
    public long Length => (long)N * C * HW;
    public override string ToString() => $"n={N} c={C} hw={HW}";
}

/// <summary>The linear layer and loss geometry: n rows, inF features in, outF out (classes).</summary>
public readonly record struct LinearShape(int N, int InF, int OutF)
{
    public override string ToString() => $"n={N} in={InF} out={OutF}";
}

/// <summary>uint8 images [n, c, h, w] cropped with <see cref="Pad"/> px zero padding, flipped and normalised.</summary>
public readonly record struct AugmentShape(int N, int C, int H, int W, int Pad)
{
    public long Length => (long)N * C * H * W;
    public override string ToString() => $"n={N} {C}x{H}x{W} pad={Pad}";
}
