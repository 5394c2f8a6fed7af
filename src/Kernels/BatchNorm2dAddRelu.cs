using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// Batch normalisation fused with the residual add and ReLU that close a BasicBlock:
/// out = max(0, bn(x) + identity). The normalise pass writes out directly (no add or relu pass), and
/// backward masks dy by (out &gt; 0) inside its own two passes, writing both dx and d(identity) = the
/// masked dy, which is the gradient of the skip path or the downsample branch. The statistics kernels
/// and the backward sums kernel are the unfused / BN+ReLU ones.
/// </summary>
public static partial class BatchNorm2d
{
    // ---- kernels ----

    /// <summary>y = max(0, (x - mean) * invStd * gamma + beta + identity), grid-stride over the elements (NaN passes).</summary>
    [KernelName("batchnorm2d_normalize_add_relu")]
    internal static void NormalizeAddReluKernel(Index1D index, ArrayView<float> x, ArrayView<float> identity, ArrayView<float> mean,
        ArrayView<float> invStd, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, ChannelIndex channelOf, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int c = channelOf.Of(i);
            float v = (x[i] - mean[c]) * (invStd[c] * gamma[c]) + beta[c];
            float s = v + identity[i];
            y[i] = s < 0f ? 0f : s;
        }
    }

    /// <summary>Eval: y = max(0, (x - runningMean) / sqrt(runningVar + eps) * gamma + beta + identity).</summary>
    [KernelName("batchnorm2d_fwd_eval_add_relu")]
    internal static void EvalAddReluKernel(Index1D index, ArrayView<float> x, ArrayView<float> identity, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> runningMean, ArrayView<float> runningVar, ArrayView<float> y, ChannelIndex channelOf, float eps, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int c = channelOf.Of(i);
            float invStd = 1f / XMath.Sqrt(runningVar[c] + eps);
            float v = (x[i] - runningMean[c]) * (invStd * gamma[c]) + beta[c];
            float s = v + identity[i];
            y[i] = s < 0f ? 0f : s;
        }
    }

    /// <summary>
    /// With g = (y &gt; 0 ? dy : 0): dx = gamma*invStd * (g - dbeta/m - xhat*dgamma/m) and dIdentity = g,
    /// grid-stride over dx's elements. dIdentity is written after dy is read, so it may be dy itself.
    /// </summary>
    [KernelName("batchnorm2d_add_relu_bwd_dx")]
    internal static void BackwardAddReluDxKernel(Index1D index, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> gamma,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dgamma, ArrayView<float> dbeta, ArrayView<float> dx,
        ArrayView<float> dIdentity, ChannelIndex channelOf, float invM, int stride)
    {
        int n = dx.IntLength; // the launcher passes dx cut to the element count
        for (int i = index; i < n; i += stride)
        {
            int c = channelOf.Of(i);
            float invStd = saveInvStd[c];
            float xhat = (x[i] - saveMean[c]) * invStd;
            float g = y[i] > 0f ? dy[i] : 0f;
            dx[i] = gamma[c] * invStd * (g - dbeta[c] * invM - xhat * dgamma[c] * invM);
            dIdentity[i] = g;
        }
    }

    // ---- launchers ----

    /// <summary>
    /// <see cref="ForwardTrain"/>, then + identity and ReLU in the same normalise pass: y = max(0, bn(x) + identity).
    /// Statistics, saveMean / saveInvStd and the running-statistics update are exactly the unfused op's.
    /// y must not overlap x or identity (it stages the statistics' partial sums).
    /// </summary>
    public static void ForwardTrainAddRelu(Device dev, ArrayView<float> x, ArrayView<float> identity, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> y, ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> runningMean, ArrayView<float> runningVar,
        int n, int c, int hw, float momentum = 0.1f, float eps = 1e-5f)
    {
        using var profile = dev.Profile("batchnorm_add_relu_fwd_train", OpCost.BatchNormAddReluTrain((long)n * c * hw));
        const string op = "BatchNorm2d.ForwardTrainAddRelu";
        long total = (long)n * c * hw;
        Check.AtLeast(op, "identity", identity, Math.Max(0, total));
        if (y.Length >= total && identity.Length >= total && total > 0)
        {
            CheckDisjoint(op, "y", y.SubView(0, total), "identity", identity.SubView(0, total));
        }
        int count = TrainStatistics(dev, op, x, gamma, beta, y, saveMean, saveInvStd, runningMean, runningVar, n, c, hw, momentum, eps);
        if (TryNormalizeFloat4(dev, x, identity, y, saveMean, saveInvStd, gamma, beta, c, hw, count, WithAddRelu)) return;
        int threads = dev.GridStrideThreads(count);
        dev.Kernel("batchnorm2d_normalize_add_relu", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ChannelIndex, int, int>(NormalizeAddReluKernel))
            (dev.Stream, threads, x, identity, saveMean, saveInvStd, gamma, beta, y, new ChannelIndex(c, hw), count, threads);
    }

    /// <summary>Eval forward with the running statistics, + identity and ReLU in one pass; y may be x or identity (exactly).</summary>
    public static void ForwardEvalAddRelu(Device dev, ArrayView<float> x, ArrayView<float> identity, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> runningMean, ArrayView<float> runningVar, ArrayView<float> y, int n, int c, int hw, float eps = 1e-5f)
    {
        using var profile = dev.Profile("batchnorm_add_relu_fwd_eval", OpCost.BatchNormAddReluEval((long)n * c * hw));
        const string op = "BatchNorm2d.ForwardEvalAddRelu";
        CheckShape(op, n, c, hw, training: false);
        long total = (long)n * c * hw;
        Check.AtLeast(op, "x", x, total);
        Check.AtLeast(op, "identity", identity, total);
        Check.AtLeast(op, "y", y, total);
        CheckChannels(op, c, ("gamma", gamma), ("beta", beta), ("runningMean", runningMean), ("runningVar", runningVar));
        CheckSameOrDisjoint(op, "y", y.SubView(0, total), "x", x.SubView(0, total));
        CheckSameOrDisjoint(op, "y", y.SubView(0, total), "identity", identity.SubView(0, total));
        int count = checked((int)total), threads = dev.GridStrideThreads(count);
        dev.Kernel("batchnorm2d_fwd_eval_add_relu", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ChannelIndex, float, int, int>(EvalAddReluKernel))
            (dev.Stream, threads, x, identity, gamma, beta, runningMean, runningVar, y, new ChannelIndex(c, hw), eps, count, threads);
    }

    /// <summary>
    /// Training backward of y = max(0, bn(x) + identity) given that output y; overwrites dx, dIdentity,
    /// dgamma, dbeta. With g = (y &gt; 0 ? dy : 0): dIdentity = g, and dx, dgamma, dbeta are
    /// <see cref="Backward"/>'s with dy replaced by g. dx must not overlap x, y, dy or dIdentity (it stages
    /// the partial sums); dIdentity must not overlap x, y or dx, and may be dy itself (masked in place)
    /// or a separate buffer, in which case dy is not modified.
    /// </summary>
    public static void BackwardAddRelu(Device dev, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> gamma,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dx, ArrayView<float> dIdentity, ArrayView<float> dgamma,
        ArrayView<float> dbeta, int n, int c, int hw)
    {
        using var profile = dev.Profile("batchnorm_add_relu_bwd", OpCost.BatchNormAddReluBackward((long)n * c * hw));
        var (m, count) = BackwardSums(dev, "BatchNorm2d.BackwardAddRelu", x, y, dy, saveMean, saveInvStd, gamma, dx, dgamma, dbeta, n, c, hw, dIdentity);
        var dxT = dx.SubView(0, count);
        if (TryBackwardDxFloat4(dev, x, y, dy, dxT, dIdentity, gamma, saveMean, saveInvStd, dgamma, dbeta, c, hw, m, count, WithAddRelu)) return;
        int threads = dev.GridStrideThreads(count);
        dev.Kernel("batchnorm2d_add_relu_bwd_dx", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ChannelIndex,
                float, int>(BackwardAddReluDxKernel))
            (dev.Stream, threads, x, y, dy, gamma, saveMean, saveInvStd, dgamma, dbeta, dxT, dIdentity, new ChannelIndex(c, hw), 1f / m, threads);
    }

    /// <summary>Element-wise kernels may write in place (the same elements) but not into a shifted overlap, where another thread reads.</summary>
    private static void CheckSameOrDisjoint(string op, string aName, ArrayView<float> a, string bName, ArrayView<float> b)
    {
        IContiguousArrayView ca = a, cb = b;
        if (a.Length == 0 || b.Length == 0 || !ReferenceEquals(ca.Buffer, cb.Buffer)) return;
        if (ca.IndexInBytes == cb.IndexInBytes && ca.LengthInBytes == cb.LengthInBytes) return;
        if (ca.IndexInBytes < cb.IndexInBytes + cb.LengthInBytes && cb.IndexInBytes < ca.IndexInBytes + ca.LengthInBytes)
            throw new ArgumentException($"{op}: '{aName}' overlaps '{bName}' without being the same elements; use the same view or a separate buffer.");
    }

    // ---- float64 references: the unfused references composed with add's and ReLU's ----

    public static partial class Reference
    {
        public sealed record AddReluBackwardResult(double[] Dx, double[] Didentity, double[] Dgamma, double[] Dbeta);

        public static TrainResult ForwardTrainAddRelu(double[] x, double[] identity, double[] gamma, double[] beta, double[] runningMean,
            double[] runningVar, int n, int c, int hw, double momentum = 0.1, double eps = 1e-5)
        {
            var r = ForwardTrain(x, gamma, beta, runningMean, runningVar, n, c, hw, momentum, eps);
            return r with { Y = Relu.Reference.Forward(Elementwise.Reference.Add(r.Y, identity)) };
        }

        public static double[] ForwardEvalAddRelu(double[] x, double[] identity, double[] gamma, double[] beta, double[] runningMean,
            double[] runningVar, int n, int c, int hw, double eps = 1e-5)
            => Relu.Reference.Forward(Elementwise.Reference.Add(ForwardEval(x, gamma, beta, runningMean, runningVar, n, c, hw, eps), identity));

        /// <summary>
        /// Backward of y = relu(bn(x) + identity) given its output y: ReLU's backward gives g, which the add
        /// passes to both operands: d(identity) = g, and batch norm's backward of g gives dx, dgamma, dbeta.
        /// </summary>
        public static AddReluBackwardResult BackwardAddRelu(double[] x, double[] y, double[] dy, double[] gamma, double[] saveMean,
            double[] saveInvStd, int n, int c, int hw)
        {
            double[] g = Relu.Reference.Backward(y, dy);
            var r = Backward(x, g, gamma, saveMean, saveInvStd, n, c, hw);
            return new AddReluBackwardResult(r.Dx, g, r.Dgamma, r.Dbeta);
        }
    }
}
