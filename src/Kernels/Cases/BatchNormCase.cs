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

    /// <summary>
    /// x uniform in [-1, 1] about 3 + channel: off zero, so that a naive sum-of-squares variance would lose
    /// digits, and a different mean per channel, so that a kernel mixing channels shows.
    /// </summary>
    public static float[] X(Random rng, in BatchNormShape s)
    {
        float[] x = CaseInputs.Uniform(rng, s.Length);
        for (long i = 0; i < x.Length; i++) x[i] += 3f + i / s.HW % s.C;
        return x;
    }

    public static float[] Gamma(Random rng, int c) => CaseInputs.Uniform(rng, c, 0.5f, 1.5f);

    /// <summary>beta uniform in [-1, 1] with beta[0] = 0, which keeps both signs in channel 0 before a ReLU.</summary>
    public static float[] Beta(Random rng, int c)
    {
        float[] beta = CaseInputs.Uniform(rng, c);
        beta[0] = 0f;
        return beta;
    }

    /// <summary>Running statistics near the batch's (mean 2.5 to 4.5, variance 0.5 to 2), so that the update is not dominated by one term.</summary>
    public static float[] RunningMean(Random rng, int c) => CaseInputs.Uniform(rng, c, 2.5f, 4.5f);

    public static float[] RunningVar(Random rng, int c) => CaseInputs.Uniform(rng, c, 0.5f, 2f);

    /// <summary>dgamma and dbeta are sums of n·hw terms of size ~1 that can cancel to near zero: absolute slack grows with them.</summary>
    public static double ChannelSumAtol(in BatchNormShape s) => 1e-5 + 1e-7 * s.N * s.HW;

    /// <summary>The forward's saved statistics as the forward kernel stores them (float), for a backward case.</summary>
    public static (float[] Mean, float[] InvStd) SavedStatistics(BatchNorm2d.Reference.TrainResult fwd)
        => (Array.ConvertAll(fwd.SaveMean, v => (float)v), Array.ConvertAll(fwd.SaveInvStd, v => (float)v));
}
