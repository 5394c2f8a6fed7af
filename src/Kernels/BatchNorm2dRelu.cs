using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// Batch normalisation fused with the ReLU that follows it (ResNet's bn1 -> relu pairs): the normalise
/// pass writes y = max(0, bn(x)) directly, and backward masks dy by (y &gt; 0) inside its own two passes,
/// so neither relu_fwd nor relu_bwd runs over the activation. The statistics kernels are the unfused
/// op's; the same staging rules apply (y must not overlap x; dx must not overlap x, y or dy).
/// </summary>
public static partial class BatchNorm2d
{
    // ---- kernels ----

    /// <summary>y = max(0, (x - mean) * invStd * gamma + beta), grid-stride over the elements (NaN passes, as in relu_fwd).</summary>
    [KernelName("batchnorm2d_normalize_relu")]
    internal static void NormalizeReluKernel(Index1D index, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> invStd,
        ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, ChannelIndex channelOf, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int c = channelOf.Of(i);
            float v = (x[i] - mean[c]) * (invStd[c] * gamma[c]) + beta[c];
            y[i] = v < 0f ? 0f : v;
        }
    }

    /// <summary>Eval: y = max(0, (x - runningMean) / sqrt(runningVar + eps) * gamma + beta).</summary>
    [KernelName("batchnorm2d_fwd_eval_relu")]
    internal static void EvalReluKernel(Index1D index, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> runningMean, ArrayView<float> runningVar, ArrayView<float> y, ChannelIndex channelOf, float eps, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int c = channelOf.Of(i);
            float invStd = 1f / XMath.Sqrt(runningVar[c] + eps);
            float v = (x[i] - runningMean[c]) * (invStd * gamma[c]) + beta[c];
            y[i] = v < 0f ? 0f : v;
        }
    }

    /// <summary>
    /// As batchnorm2d_bwd_partial with g = (y &gt; 0 ? dy : 0) in place of dy: group g = channel*parts + part
    /// sums g and g*(x - mean) over its slice of the channel into partial[g] and partial[channels*parts + g].
    /// </summary>
    [KernelName("batchnorm2d_relu_bwd_partial")]
    [GroupSize(nameof(PartialGroupThreads))]
    internal static void BackwardReluPartialKernel(ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> saveMean,
        ArrayView<float> partial, int channels, int hw, FastDivisor divHw, int m, int parts, int chunk)
    {
        var sDy = SharedMemory.Allocate<float>(MaxGroup);
        var sDyXc = SharedMemory.Allocate<float>(MaxGroup);

        int g = Grid.IdxX;
        int channel = g / parts;
        int begin = (g - channel * parts) * chunk;
        int end = XMath.Min(m, begin + chunk);
        int t = Group.IdxX;
        int groupSize = Group.DimX;
        float mean = saveMean[channel];

        float sumDy = 0f, sumDyXc = 0f;
        var walk = new ChannelWalk(begin + t, groupSize, channel, channels, hw, divHw);
        for (int k = begin + t; k < end; k += groupSize)
        {
            int idx = walk.Index;
            float d = y[idx] > 0f ? dy[idx] : 0f; // a select, not a branch: the mask is data-dependent
            sumDy += d;
            sumDyXc += d * (x[idx] - mean);
            walk.Next();
        }
        StoreGroupSums(sDy, sDyXc, sumDy, sumDyXc, partial, g, channels * parts);
    }

    /// <summary>dx = gamma*invStd * (g - dbeta/m - xhat*dgamma/m) with g = (y &gt; 0 ? dy : 0), grid-stride over the elements.</summary>
    [KernelName("batchnorm2d_relu_bwd_dx")]
    internal static void BackwardReluDxKernel(Index1D index, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> gamma,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dgamma, ArrayView<float> dbeta, ArrayView<float> dx,
        ChannelIndex channelOf, float invM, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int c = channelOf.Of(i);
            float invStd = saveInvStd[c];
            float xhat = (x[i] - saveMean[c]) * invStd;
            float g = y[i] > 0f ? dy[i] : 0f;
            dx[i] = gamma[c] * invStd * (g - dbeta[c] * invM - xhat * dgamma[c] * invM);
        }
    }

    // ---- launchers ----

    /// <summary>
    /// <see cref="ForwardTrain"/> followed by ReLU in the same normalise pass: y = max(0, bn(x)). Statistics,
    /// saveMean / saveInvStd and the running-statistics update are exactly the unfused op's. y must not overlap x.
    /// </summary>
    public static void ForwardTrainRelu(Device dev, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> runningMean, ArrayView<float> runningVar,
        int n, int c, int hw, float momentum = 0.1f, float eps = 1e-5f)
    {
        using var profile = dev.Profile("batchnorm_relu_fwd_train", OpCost.BatchNormReluTrain((long)n * c * hw));
        int count = TrainStatistics(dev, "BatchNorm2d.ForwardTrainRelu", x, gamma, beta, y, saveMean, saveInvStd, runningMean, runningVar, n, c, hw, momentum, eps);
        if (TryNormalizeFloat4(dev, x, x, y, saveMean, saveInvStd, gamma, beta, c, hw, count, WithRelu)) return;
        int threads = dev.GridStrideThreads(count);
        dev.Kernel("batchnorm2d_normalize_relu", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ChannelIndex, int, int>(NormalizeReluKernel))
            (dev.Stream, threads, x, saveMean, saveInvStd, gamma, beta, y, new ChannelIndex(c, hw), count, threads);
    }

    /// <summary>Eval forward with the running statistics and ReLU in one pass; y may alias x.</summary>
    public static void ForwardEvalRelu(Device dev, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> runningMean, ArrayView<float> runningVar, ArrayView<float> y, int n, int c, int hw, float eps = 1e-5f)
    {
        using var profile = dev.Profile("batchnorm_relu_fwd_eval", OpCost.BatchNormReluEval((long)n * c * hw));
        const string op = "BatchNorm2d.ForwardEvalRelu";
        CheckShape(op, n, c, hw, training: false);
        long total = (long)n * c * hw;
        Check.AtLeast(op, "x", x, total);
        Check.AtLeast(op, "y", y, total);
        CheckChannels(op, c, ("gamma", gamma), ("beta", beta), ("runningMean", runningMean), ("runningVar", runningVar));
        int count = checked((int)total), threads = dev.GridStrideThreads(count);
        dev.Kernel("batchnorm2d_fwd_eval_relu", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ChannelIndex, float, int, int>(EvalReluKernel))
            (dev.Stream, threads, x, gamma, beta, runningMean, runningVar, y, new ChannelIndex(c, hw), eps, count, threads);
    }

    /// <summary>
    /// Training backward of y = max(0, bn(x)) given that output y; overwrites dx, dgamma, dbeta. Equals
    /// <see cref="Backward"/> with dy replaced by g = (y &gt; 0 ? dy : 0), which is never written out:
    /// dbeta = sum g, dgamma = sum g*xhat, dx = gamma*invStd/m * (m*g - dbeta - xhat*dgamma).
    /// dx must not overlap x, y or dy (it stages the partial sums); dy is not modified.
    /// </summary>
    public static void BackwardRelu(Device dev, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> gamma,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dx, ArrayView<float> dgamma, ArrayView<float> dbeta,
        int n, int c, int hw)
    {
        using var profile = dev.Profile("batchnorm_relu_bwd", OpCost.BatchNormReluBackward((long)n * c * hw));
        var (m, count) = BackwardSums(dev, "BatchNorm2d.BackwardRelu", x, y, dy, saveMean, saveInvStd, gamma, dx, dgamma, dbeta, n, c, hw);
        if (TryBackwardDxFloat4(dev, x, y, dy, dx, dx, gamma, saveMean, saveInvStd, dgamma, dbeta, c, hw, m, count, WithRelu)) return;
        int threads = dev.GridStrideThreads(count);
        dev.Kernel("batchnorm2d_relu_bwd_dx", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ChannelIndex, float,
                int, int>(BackwardReluDxKernel))
            (dev.Stream, threads, x, y, dy, gamma, saveMean, saveInvStd, dgamma, dbeta, dx, new ChannelIndex(c, hw), 1f / m, count, threads);
    }

    // ---- float64 references: the unfused references composed with ReLU's ----

    public static partial class Reference
    {
        public static TrainResult ForwardTrainRelu(double[] x, double[] gamma, double[] beta, double[] runningMean, double[] runningVar,
            int n, int c, int hw, double momentum = 0.1, double eps = 1e-5)
        {
            var r = ForwardTrain(x, gamma, beta, runningMean, runningVar, n, c, hw, momentum, eps);
            return r with { Y = Relu.Reference.Forward(r.Y) };
        }

        public static double[] ForwardEvalRelu(double[] x, double[] gamma, double[] beta, double[] runningMean, double[] runningVar,
            int n, int c, int hw, double eps = 1e-5)
            => Relu.Reference.Forward(ForwardEval(x, gamma, beta, runningMean, runningVar, n, c, hw, eps));

        /// <summary>Backward of y = relu(bn(x)) given its output y: ReLU's backward, then batch norm's.</summary>
        public static BackwardResult BackwardRelu(double[] x, double[] y, double[] dy, double[] gamma, double[] saveMean, double[] saveInvStd,
            int n, int c, int hw)
            => Backward(x, Relu.Reference.Backward(y, dy), gamma, saveMean, saveInvStd, n, c, hw);
    }
}
