using Engine.Kernels;

namespace Engine.Tests;

/// <summary>How a batch-norm train forward is compared with its float64 reference.</summary>
public static class BatchNormAsserts
{
    /// <summary>
    /// The saved mean against the reference; the saved 1/std against the reference with its float32
    /// rounding bound added (large when a channel's few values nearly coincide); y against the
    /// normalisation applied with the device's own statistics, then <paramref name="epilogue"/>
    /// (ReLU, add + ReLU). Together these pin y to the exact answer as closely as float32 allows.
    /// </summary>
    public static void TrainForward(BatchNorm2d.Reference.TrainResult r, float[] x, float[] gamma, float[] beta, float[] y,
        float[] saveMean, float[] saveInvStd, int n, int c, int hw, Func<double[], double[]> epilogue, string what, int seed)
    {
        var e = BatchNorm2d.Reference.ExpectedFromStatistics(r, Numerics.ToDouble(x), Numerics.ToDouble(gamma), Numerics.ToDouble(beta),
            Numerics.ToDouble(saveMean), Numerics.ToDouble(saveInvStd), n, c, hw, epilogue);
        Numerics.AssertClose(r.SaveMean, saveMean, what: $"{what} saveMean", seed: seed);
        Numerics.AssertClose(r.SaveInvStd, saveInvStd, what: $"{what} saveInvStd", seed: seed, slack: e.InvStdSlack);
        Numerics.AssertClose(e.Y, y, what: $"{what} y", seed: seed);
    }
}
