namespace Engine.Runner.Scaling;

/// <summary>Everything the scaling model is told besides the single-device step and the link.</summary>
/// <param name="Devices">N: devices for dp, ranks for ddp.</param>
/// <param name="BatchSize">Per device, as in the seed (dp's global batch is N x this).</param>
/// <param name="TrainImages">Images per epoch (CIFAR-10: 50,000).</param>
/// <param name="InputBytesPerImage">One input image as the model reads it (fp32 3x32x32 = 12,288 bytes).</param>
/// <param name="BucketMb">DDP bucket cap after the first (1 MiB) bucket, MiB.</param>
/// <param name="Overlap">DDP starts a bucket's all-reduce as soon as backward has made it ready.</param>
/// <param name="DpSerialDispatch">One host thread launches every replica's kernels (PyTorch's DP under the GIL).</param>
/// <param name="KernelsPerStep">Kernel launches of one replica's step (forward + backward).</param>
/// <param name="LaunchUs">Host time per kernel launch, microseconds.</param>
/// <param name="MemoryGBs">Device memory bandwidth, for the SGD step and DP's gradient sum.</param>
/// <param name="SharedDevice">Every replica or rank runs on one physical device, so their compute adds up.</param>
public sealed record ScalingSettings(
    int Devices = 2,
    int BatchSize = 512,
    int TrainImages = 50_000,
    int InputBytesPerImage = 3 * 32 * 32 * sizeof(float),
    double BucketMb = 25,
    bool Overlap = true,
    bool DpSerialDispatch = true,
    int KernelsPerStep = 500,
    double LaunchUs = 10,
    double MemoryGBs = 504,
    bool SharedDevice = false)
{
    public int SingleSteps => TrainImages / BatchSize;
    public int ParallelSteps => TrainImages / (BatchSize * Devices);

    public void Validate()
    {
        if (Devices < 1) throw new ArgumentException($"--devices must be at least 1, got {Devices}.");
        if (BatchSize < 1) throw new ArgumentException($"--batch-size must be at least 1, got {BatchSize}.");
        if (TrainImages < BatchSize * Devices) throw new ArgumentException($"--images ({TrainImages}) must hold at least one global batch ({BatchSize * Devices}).");
        if (!(BucketMb > 0)) throw new ArgumentException($"--bucket-mb must be positive, got {BucketMb}.");
        if (KernelsPerStep < 0) throw new ArgumentException($"--kernels-per-step must be non-negative, got {KernelsPerStep}.");
        if (!(LaunchUs >= 0)) throw new ArgumentException($"--launch-us must be non-negative, got {LaunchUs}.");
        if (!(MemoryGBs > 0)) throw new ArgumentException($"--memory-gbs must be positive, got {MemoryGBs}.");
    }
}
