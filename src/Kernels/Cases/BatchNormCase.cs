namespace Engine.Kernels.Cases;

/// <summary>The inputs and shapes the batch-norm cases share.</summary>
public static class BatchNormCase
{
    /// <summary>
    /// Shapes that are and are not multiples of the reduction plan: hw = 1 (one value per image), 61 (several
    /// parts per channel on the CPU plan, the last one shorter), 64 and 8 (the float4 passes), 33, 7, 9.
    /// </summary>
    public static IReadOnlyList<BatchNormShape> Shapes { get; } =
        [new(3, 5, 7), new(2, 3, 1), new(1, 2, 9), new(5, 3, 61), new(4, 2, 64), new(3, 5, 8), new(2, 2, 33), new(4, 3, 1)];

    public static IReadOnlyList<BatchNormShape> LargeShapes { get; } = [new(64, 64, 64)];

    public const float Momentum = 0.1f, Eps = 1e-5f;

    /// <summary>x off zero ([2, 5]) so that a naive sum-of-squares variance would lose digits.</summary>
    public static float[] X(Random rng, long n) => CaseInputs.Uniform(rng, n, 2, 5);

    public static float[] Gamma(Random rng, int c) => CaseInputs.Uniform(rng, c, 0.5f, 1.5f);

    /// <summary>dgamma and dbeta are sums of n·hw terms of size ~1 that can cancel to near zero: absolute slack grows with them.</summary>
    public static double ChannelSumAtol(in BatchNormShape s) => 1e-5 + 1e-7 * s.N * s.HW;

    /// <summary>The forward's saved statistics as the forward kernel stores them (float), for a backward case.</summary>
    public static (float[] Mean, float[] InvStd) SavedStatistics(BatchNorm2d.Reference.TrainResult fwd)
        => (Array.ConvertAll(fwd.SaveMean, v => (float)v), Array.ConvertAll(fwd.SaveInvStd, v => (float)v));
}
