using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// 2-D batch normalisation over NCHW with PyTorch's semantics: training normalises with the batch
/// mean and BIASED variance over (N, H, W) per channel and updates the running statistics with the
/// UNBIASED variance; eval normalises with the running statistics.
/// <para>
/// The per-channel reductions run in two stages so that even a few channels with many elements fill
/// the GPU: a grid of (channel, part) groups reduces contiguous slices of a channel's m = N*H*W
/// elements (per-thread Welford / sums, then a shared-memory tree), and one thread per channel
/// combines the parts in a fixed order. The parts are staged in the big output (y, resp. dx) before it
/// is written, so no scratch buffer is needed; hence y must not overlap x, and dx must not overlap x
/// or dy. Everything is deterministic.
/// </para>
/// </summary>
public static partial class BatchNorm2d
{
    /// <summary>Shared-memory size of the reduction kernels: the largest group they are launched with.</summary>
    private const int MaxGroup = 256;

    // ---- kernels ----

    /// <summary>
    /// Group g = channel*parts + part reduces elements [part*chunk, min(m, part*chunk + chunk)) of its
    /// channel (flat index k = n*hw + j) to a mean and M2 (sum of squared deviations). Each thread sums
    /// its strided slice shifted by the first value it reads (s = Σ(v - K), q = Σ(v - K)²: an add, an add
    /// and a multiply-add per value, no division), which keeps the cancellation in M2 = q - s²/count as
    /// small as Welford's when K lies among the values; one division per thread turns the sums into a mean
    /// and M2, then the group merges pairs with Chan's formula.
    /// Writes partMean[g] = partial[g], partM2[g] = partial[channels*parts + g].
    /// </summary>
    [KernelName("batchnorm2d_stats_partial")]
    [GroupSize(nameof(PartialGroupThreads))]
    internal static void StatsPartialKernel(ArrayView<float> x, ArrayView<float> partial, int channels, int hw, FastDivisor divHw, int m, int parts, int chunk)
    {
        var sCount = SharedMemory.Allocate<int>(MaxGroup);
        var sMean = SharedMemory.Allocate<float>(MaxGroup);
        var sM2 = SharedMemory.Allocate<float>(MaxGroup);

        int g = Grid.IdxX;
        int channel = g / parts;
        int begin = (g - channel * parts) * chunk;
        int end = XMath.Min(m, begin + chunk);
        int t = Group.IdxX;
        int groupSize = Group.DimX;

        int count = 0;
        float shift = 0f, sum = 0f, squares = 0f;
        var walk = new ChannelWalk(begin + t, groupSize, channel, channels, hw, divHw);
        if (begin + t < end) shift = x[walk.Index];
        for (int k = begin + t; k < end; k += groupSize)
        {
            float d = x[walk.Index] - shift;
            sum += d;
            squares += d * d;
            count++;
            walk.Next();
        }
        float mean = 0f, m2 = 0f;
        if (count > 0)
        {
            float average = sum / count;
            mean = shift + average;
            m2 = XMath.Max(0f, squares - sum * average);
        }
        sCount[t] = count;
        sMean[t] = mean;
        sM2[t] = m2;
        Group.Barrier();

        for (int stride = groupSize / 2; stride > 0; stride >>= 1)
        {
            if (t < stride)
            {
                int nb = sCount[t + stride];
                if (nb > 0)
                {
                    int na = sCount[t];
                    int nab = na + nb;
                    float ma = sMean[t], mb = sMean[t + stride];
                    float d = mb - ma;
                    float wb = (float)nb / nab;
                    sMean[t] = ma + d * wb;
                    sM2[t] = sM2[t] + sM2[t + stride] + d * d * na * wb;
                    sCount[t] = nab;
                }
            }
            Group.Barrier();
        }
        if (t == 0)
        {
            partial[g] = sMean[0];
            partial[channels * parts + g] = sM2[0];
        }
    }

    /// <summary>
    /// One thread per channel: merges the parts in order, writes the saved mean and 1/sqrt(var + eps)
    /// (biased variance) and updates the running statistics (unbiased variance).
    /// </summary>
    [KernelName("batchnorm2d_stats_finalize")]
    internal static void StatsFinalizeKernel(Index1D channel, ArrayView<float> partial, ArrayView<float> saveMean, ArrayView<float> saveInvStd,
        ArrayView<float> runningMean, ArrayView<float> runningVar, int channels, int m, int parts, int chunk, float momentum, float eps)
    {
        int count = 0;
        float mean = 0f, m2 = 0f;
        for (int p = 0; p < parts; p++)
        {
            int nb = XMath.Min(m - p * chunk, chunk);
            if (nb <= 0) break;
            int g = channel * parts + p;
            float mb = partial[g];
            int nab = count + nb;
            float d = mb - mean;
            float wb = (float)nb / nab;
            mean += d * wb;
            m2 += partial[channels * parts + g] + d * d * count * wb;
            count = nab;
        }
        float variance = m2 / m;
        saveMean[channel] = mean;
        saveInvStd[channel] = 1f / XMath.Sqrt(variance + eps);
        runningMean[channel] = (1f - momentum) * runningMean[channel] + momentum * mean;
        runningVar[channel] = (1f - momentum) * runningVar[channel] + momentum * (m2 / (m - 1));
    }

    /// <summary>y = (x - mean) * invStd * gamma + beta, grid-stride over the elements.</summary>
    [KernelName("batchnorm2d_normalize")]
    internal static void NormalizeKernel(Index1D index, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> invStd,
        ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, ChannelIndex channelOf, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int c = channelOf.Of(i);
            y[i] = (x[i] - mean[c]) * (invStd[c] * gamma[c]) + beta[c];
        }
    }

    /// <summary>Eval: y = (x - runningMean) / sqrt(runningVar + eps) * gamma + beta, grid-stride over the elements.</summary>
    [KernelName("batchnorm2d_fwd_eval")]
    internal static void EvalKernel(Index1D index, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> runningMean, ArrayView<float> runningVar, ArrayView<float> y, ChannelIndex channelOf, float eps, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int c = channelOf.Of(i);
            float invStd = 1f / XMath.Sqrt(runningVar[c] + eps);
            y[i] = (x[i] - runningMean[c]) * (invStd * gamma[c]) + beta[c];
        }
    }

    /// <summary>
    /// Group g = channel*parts + part sums dy and dy*(x - mean) over its slice of the channel;
    /// partial[g] and partial[channels*parts + g] receive the two sums.
    /// </summary>
    /// <summary>
    /// Device helper of the backward partial kernels (plain and ReLU-masked): tree-sums the group's two
    /// per-thread sums in shared memory; thread 0 writes them to partial[g] and partial[secondOffset + g].
    /// </summary>
    private static void StoreGroupSums(ArrayView<float> sDy, ArrayView<float> sDyXc, float sumDy, float sumDyXc,
        ArrayView<float> partial, int g, int secondOffset)
    {
        int t = Group.IdxX;
        sDy[t] = sumDy;
        sDyXc[t] = sumDyXc;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride >>= 1)
        {
            if (t < stride)
            {
                sDy[t] += sDy[t + stride];
                sDyXc[t] += sDyXc[t + stride];
            }
            Group.Barrier();
        }
        if (t == 0)
        {
            partial[g] = sDy[0];
            partial[secondOffset + g] = sDyXc[0];
        }
    }

    [KernelName("batchnorm2d_bwd_partial")]
    [GroupSize(nameof(PartialGroupThreads))]
    internal static void BackwardPartialKernel(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> saveMean, ArrayView<float> partial,
        int channels, int hw, FastDivisor divHw, int m, int parts, int chunk)
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
            float d = dy[walk.Index];
            sumDy += d;
            sumDyXc += d * (x[walk.Index] - mean);
            walk.Next();
        }
        StoreGroupSums(sDy, sDyXc, sumDy, sumDyXc, partial, g, channels * parts);
    }

    /// <summary>One thread per channel: dbeta = sum dy, dgamma = invStd * sum dy*(x - mean), parts added in order.</summary>
    [KernelName("batchnorm2d_bwd_finalize")]
    internal static void BackwardFinalizeKernel(Index1D channel, ArrayView<float> partial, ArrayView<float> saveInvStd,
        ArrayView<float> dgamma, ArrayView<float> dbeta, int channels, int parts)
    {
        float sumDy = 0f, sumDyXc = 0f;
        for (int p = 0; p < parts; p++)
        {
            int g = channel * parts + p;
            sumDy += partial[g];
            sumDyXc += partial[channels * parts + g];
        }
        dbeta[channel] = sumDy;
        dgamma[channel] = sumDyXc * saveInvStd[channel];
    }

    /// <summary>dx = gamma*invStd * (dy - dbeta/m - xhat*dgamma/m), grid-stride over the elements.</summary>
    [KernelName("batchnorm2d_bwd_dx")]
    internal static void BackwardDxKernel(Index1D index, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> gamma,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dgamma, ArrayView<float> dbeta, ArrayView<float> dx,
        ChannelIndex channelOf, float invM, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int c = channelOf.Of(i);
            float invStd = saveInvStd[c];
            float xhat = (x[i] - saveMean[c]) * invStd;
            dx[i] = gamma[c] * invStd * (dy[i] - dbeta[c] * invM - xhat * dgamma[c] * invM);
        }
    }

    // ---- launchers ----

    /// <summary>
    /// Training forward: batch mean and biased variance per channel over (N, H, W);
    /// y = (x - mean) * invStd * gamma + beta with invStd = 1/sqrt(var + eps). Writes saveMean and
    /// saveInvStd [C] for backward and updates runningMean / runningVar [C] in place with the unbiased
    /// variance, as PyTorch does. y must not overlap x (it stages the partial statistics).
    /// </summary>
    public static void ForwardTrain(Device dev, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> runningMean, ArrayView<float> runningVar,
        int n, int c, int hw, float momentum = 0.1f, float eps = 1e-5f)
    {
        using var profile = dev.Profile("batchnorm_fwd_train", OpCost.BatchNormTrain((long)n * c * hw));
        int count = TrainStatistics(dev, "BatchNorm2d.ForwardTrain", x, gamma, beta, y, saveMean, saveInvStd, runningMean, runningVar, n, c, hw, momentum, eps);
        if (TryNormalizeFloat4(dev, x, x, y, saveMean, saveInvStd, gamma, beta, c, hw, count, Plain)) return;
        int threads = dev.GridStrideThreads(count);
        dev.Kernel("batchnorm2d_normalize", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ChannelIndex, int, int>(NormalizeKernel))
            (dev.Stream, threads, x, saveMean, saveInvStd, gamma, beta, y, new ChannelIndex(c, hw), count, threads);
    }

    /// <summary>
    /// The first half of every training forward (plain and fused): checks the operands, then computes the
    /// batch statistics into saveMean / saveInvStd and updates the running statistics, staging the partial
    /// sums in y (so y must not overlap x). Returns the element count for the normalise pass.
    /// </summary>
    private static int TrainStatistics(Device dev, string op, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> runningMean, ArrayView<float> runningVar,
        int n, int c, int hw, float momentum, float eps)
    {
        int m = CheckShape(op, n, c, hw, training: true);
        long total = (long)n * c * hw;
        Check.AtLeast(op, "x", x, total);
        Check.AtLeast(op, "y", y, total);
        CheckChannels(op, c, ("gamma", gamma), ("beta", beta), ("saveMean", saveMean), ("saveInvStd", saveInvStd),
            ("runningMean", runningMean), ("runningVar", runningVar));
        CheckDisjoint(op, "y", y.SubView(0, total), "x", x.SubView(0, total));

        var (groupSize, parts, chunk) = Plan(dev, m);
        var partial = y.SubView(0, 2L * c * parts);
        dev.Kernel("batchnorm2d_stats_partial", acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int, FastDivisor, int,
                int, int>(StatsPartialKernel))
            (dev.Stream, new KernelConfig(c * parts, groupSize), x, partial, c, hw, new FastDivisor(hw), m, parts, chunk);
        dev.Kernel("batchnorm2d_stats_finalize", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                int, int, int, int, float, float>(StatsFinalizeKernel))
            (dev.Stream, c, partial, saveMean, saveInvStd, runningMean, runningVar, c, m, parts, chunk, momentum, eps);
        return checked((int)total);
    }

    /// <summary>Eval forward with the running statistics; y may alias x.</summary>
    public static void ForwardEval(Device dev, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta,
        ArrayView<float> runningMean, ArrayView<float> runningVar, ArrayView<float> y, int n, int c, int hw, float eps = 1e-5f)
    {
        using var profile = dev.Profile("batchnorm_fwd_eval", OpCost.BatchNormEval((long)n * c * hw));
        const string op = "BatchNorm2d.ForwardEval";
        CheckShape(op, n, c, hw, training: false);
        long total = (long)n * c * hw;
        Check.AtLeast(op, "x", x, total);
        Check.AtLeast(op, "y", y, total);
        CheckChannels(op, c, ("gamma", gamma), ("beta", beta), ("runningMean", runningMean), ("runningVar", runningVar));
        int count = checked((int)total), threads = dev.GridStrideThreads(count);
        dev.Kernel("batchnorm2d_fwd_eval", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ChannelIndex, float, int, int>(EvalKernel))
            (dev.Stream, threads, x, gamma, beta, runningMean, runningVar, y, new ChannelIndex(c, hw), eps, count, threads);
    }

    /// <summary>
    /// Training backward; overwrites dx, dgamma, dbeta: dbeta = sum dy, dgamma = sum dy*xhat,
    /// dx = gamma*invStd/m * (m*dy - dbeta - xhat*dgamma) with xhat = (x - saveMean)*saveInvStd.
    /// dx must not overlap x or dy (it stages the partial sums).
    /// </summary>
    public static void Backward(Device dev, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> gamma,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dx, ArrayView<float> dgamma, ArrayView<float> dbeta,
        int n, int c, int hw)
    {
        using var profile = dev.Profile("batchnorm_bwd", OpCost.BatchNormBackward((long)n * c * hw));
        var (m, count) = BackwardSums(dev, "BatchNorm2d.Backward", x, null, dy, saveMean, saveInvStd, gamma, dx, dgamma, dbeta, n, c, hw);
        if (TryBackwardDxFloat4(dev, x, x, dy, dx, dx, gamma, saveMean, saveInvStd, dgamma, dbeta, c, hw, m, count, Plain)) return;
        int threads = dev.GridStrideThreads(count);
        dev.Kernel("batchnorm2d_bwd_dx", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ChannelIndex, float, int,
                int>(BackwardDxKernel))
            (dev.Stream, threads, x, dy, gamma, saveMean, saveInvStd, dgamma, dbeta, dx, new ChannelIndex(c, hw), 1f / m, count, threads);
    }

    /// <summary>
    /// The first half of every backward (plain and fused): checks the operands, then reduces dbeta = sum g
    /// and dgamma = sum g * xhat per channel, g being dy or, given the ReLU output <paramref name="reluY"/>,
    /// dy masked by y &gt; 0. The partial sums are staged in dx (so dx must not overlap x, y or dy).
    /// The block tail's backward also passes <paramref name="dIdentity"/>, checked here with the rest: it
    /// may be dy itself but must not overlap x, y or dx. Returns m = N*H*W and the element count for the dx pass.
    /// </summary>
    private static (int M, int Count) BackwardSums(Device dev, string op, ArrayView<float> x, ArrayView<float>? reluY, ArrayView<float> dy,
        ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> gamma, ArrayView<float> dx, ArrayView<float> dgamma,
        ArrayView<float> dbeta, int n, int c, int hw, ArrayView<float>? dIdentity = null)
    {
        int m = CheckShape(op, n, c, hw, training: true);
        long total = (long)n * c * hw;
        Check.AtLeast(op, "x", x, total);
        if (reluY is { } yv) Check.AtLeast(op, "y", yv, total);
        Check.AtLeast(op, "dy", dy, total);
        Check.AtLeast(op, "dx", dx, total);
        if (dIdentity is { } di) Check.AtLeast(op, "dIdentity", di, total);
        CheckChannels(op, c, ("gamma", gamma), ("saveMean", saveMean), ("saveInvStd", saveInvStd), ("dgamma", dgamma), ("dbeta", dbeta));
        var dxT = dx.SubView(0, total);
        CheckDisjoint(op, "dx", dxT, "x", x.SubView(0, total));
        if (reluY is { } y) CheckDisjoint(op, "dx", dxT, "y", y.SubView(0, total));
        CheckDisjoint(op, "dx", dxT, "dy", dy.SubView(0, total));
        if (dIdentity is { } d)
        {
            var diT = d.SubView(0, total);
            CheckDisjoint(op, "dx", dxT, "dIdentity", diT);
            CheckDisjoint(op, "dIdentity", diT, "x", x.SubView(0, total));
            if (reluY is { } yy) CheckDisjoint(op, "dIdentity", diT, "y", yy.SubView(0, total));
            CheckSameOrDisjoint(op, "dIdentity", diT, "dy", dy.SubView(0, total));
        }

        var (groupSize, parts, chunk) = Plan(dev, m);
        var partial = dx.SubView(0, 2L * c * parts);
        var config = new KernelConfig(c * parts, groupSize);
        if (reluY is { } mask)
        {
            dev.Kernel("batchnorm2d_relu_bwd_partial", acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
                int, FastDivisor, int, int, int>(BackwardReluPartialKernel))
                (dev.Stream, config, x, mask, dy, saveMean, partial, c, hw, new FastDivisor(hw), m, parts, chunk);
        }
        else
        {
            dev.Kernel("batchnorm2d_bwd_partial", acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int,
                FastDivisor, int, int, int>(BackwardPartialKernel))
                (dev.Stream, config, x, dy, saveMean, partial, c, hw, new FastDivisor(hw), m, parts, chunk);
        }
        dev.Kernel("batchnorm2d_bwd_finalize", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int,
                int>(BackwardFinalizeKernel))
            (dev.Stream, c, partial, saveInvStd, dgamma, dbeta, c, parts);
        return (m, checked((int)total));
    }

    /// <summary>
    /// Group size (a power of two, at most <see cref="MaxGroup"/> and the device's tiled-kernel group)
    /// and how a channel's m elements are cut into parts: each thread should see a handful of elements
    /// on a GPU (16), and many on the CPU emulator (128), whose one-thread groups make a group cheap
    /// but not free; 128 still gives its tests several parts per channel. The staging needs 2*parts &lt;= m.
    /// </summary>
    /// <summary>Threads in a group of the partial-sum kernels under a tuning: the largest power of two within MaxGroup and the tiled group.</summary>
    internal static int PartialGroupThreads(KernelTuning t) => PowerOfTwoAtMost(Math.Min(MaxGroup, t.GroupSize));

    private static int PowerOfTwoAtMost(int limit)
    {
        int p = 1;
        while (p * 2 <= limit) p *= 2;
        return p;
    }

    private static (int GroupSize, int Parts, int Chunk) Plan(Device dev, int m)
    {
        int groupSize = PowerOfTwoAtMost(Math.Min(PartialGroupThreads(dev.Tuning), dev.Accelerator.MaxNumThreadsPerGroup));
        int perThread = dev.IsCpu ? 128 : 16;
        int parts = Math.Clamp((m + groupSize * perThread - 1) / (groupSize * perThread), 1, m / 2);
        int chunk = (m + parts - 1) / parts;
        parts = (m + chunk - 1) / chunk; // no empty part
        return (groupSize, parts, chunk);
    }

    /// <summary>Validates the shape and returns m = N*H*W, the number of values per channel.</summary>
    private static int CheckShape(string op, int n, int c, int hw, bool training)
    {
        if (n <= 0 || c <= 0 || hw <= 0)
            throw new ArgumentException($"{op}: n, c, hw must be positive, got n={n} c={c} hw={hw}.");
        if ((long)n * c * hw > int.MaxValue)
            throw new ArgumentException($"{op}: {n}x{c}x{hw} has more than int.MaxValue elements.");
        int m = n * hw;
        if (training && m < 2)
            throw new ArgumentException($"{op}: training needs more than one value per channel (n*hw = {m}), as PyTorch does.");
        return m;
    }

    private static void CheckChannels(string op, int c, params (string Name, ArrayView<float> View)[] views)
    {
        foreach (var (name, view) in views) Check.AtLeast(op, name, view, c);
    }

    private static void CheckDisjoint(string op, string aName, ArrayView<float> a, string bName, ArrayView<float> b)
    {
        IContiguousArrayView ca = a, cb = b;
        if (a.Length == 0 || b.Length == 0 || !ReferenceEquals(ca.Buffer, cb.Buffer)) return;
        if (ca.IndexInBytes < cb.IndexInBytes + cb.LengthInBytes && cb.IndexInBytes < ca.IndexInBytes + ca.LengthInBytes)
            throw new ArgumentException($"{op}: '{aName}' overlaps '{bName}'; it holds intermediate sums, so it must be a separate buffer.");
    }

    // ---- float64 references ----

    public static partial class Reference
    {
        public sealed record TrainResult(double[] Y, double[] SaveMean, double[] SaveInvStd, double[] RunningMean, double[] RunningVar);

        public sealed record BackwardResult(double[] Dx, double[] Dgamma, double[] Dbeta);

        /// <summary>Two-pass mean and biased variance per channel; the running statistics are returned updated (inputs untouched).</summary>
        public static TrainResult ForwardTrain(double[] x, double[] gamma, double[] beta, double[] runningMean, double[] runningVar,
            int n, int c, int hw, double momentum = 0.1, double eps = 1e-5)
        {
            int m = n * hw;
            var y = new double[n * c * hw];
            var mean = new double[c];
            var invStd = new double[c];
            var rm = new double[c];
            var rv = new double[c];
            for (int ch = 0; ch < c; ch++)
            {
                double s = 0;
                for (int b = 0; b < n; b++)
                    for (int j = 0; j < hw; j++) s += x[(b * c + ch) * hw + j];
                double mu = s / m;
                double sq = 0;
                for (int b = 0; b < n; b++)
                    for (int j = 0; j < hw; j++) { double d = x[(b * c + ch) * hw + j] - mu; sq += d * d; }
                double variance = sq / m;
                mean[ch] = mu;
                invStd[ch] = 1.0 / Math.Sqrt(variance + eps);
                rm[ch] = (1 - momentum) * runningMean[ch] + momentum * mu;
                rv[ch] = (1 - momentum) * runningVar[ch] + momentum * sq / (m - 1);
                for (int b = 0; b < n; b++)
                    for (int j = 0; j < hw; j++)
                    {
                        int i = (b * c + ch) * hw + j;
                        y[i] = (x[i] - mu) * invStd[ch] * gamma[ch] + beta[ch];
                    }
            }
            return new TrainResult(y, mean, invStd, rm, rv);
        }

        /// <summary>
        /// The train forward's y = (x - mean) * invStd * gamma + beta with the statistics given. Checking a
        /// device's y against this with the device's own saved statistics separates the normalisation
        /// (plain float arithmetic) from the statistics, whose float32 error can be large when a channel's
        /// values nearly coincide (<see cref="InvStdRoundingBound"/>).
        /// </summary>
        public static double[] Normalize(double[] x, double[] gamma, double[] beta, double[] mean, double[] invStd, int n, int c, int hw)
        {
            var y = new double[n * c * hw];
            for (int i = 0; i < y.Length; i++)
            {
                int ch = i / hw % c;
                y[i] = (x[i] - mean[ch]) * invStd[ch] * gamma[ch] + beta[ch];
            }
            return y;
        }

        /// <summary>What a float32 training forward is held to, given the statistics it saved.</summary>
        /// <param name="Y">The normalisation applied with those statistics, then the op's epilogue (ReLU, add + ReLU).</param>
        /// <param name="InvStdSlack">Per channel, the <see cref="InvStdRoundingBound"/> its saved 1/std may differ from the exact one by.</param>
        public sealed record TrainExpectation(double[] Y, double[] InvStdSlack);

        /// <summary>
        /// How every check of a training forward (kernel tests, `engine check kernels`, the bench) compares
        /// a device's output: saved 1/std against <paramref name="exact"/> within the rounding bound, y
        /// against the normalisation with the device's own <paramref name="mean"/> and <paramref name="invStd"/>.
        /// </summary>
        public static TrainExpectation ExpectedFromStatistics(TrainResult exact, double[] x, double[] gamma, double[] beta, double[] mean,
            double[] invStd, int n, int c, int hw, Func<double[], double[]>? epilogue = null)
        {
            double[] z = Normalize(x, gamma, beta, mean, invStd, n, c, hw);
            return new TrainExpectation(epilogue is null ? z : epilogue(z), InvStdRoundingBound(x, exact.SaveInvStd, n, c, hw));
        }

        /// <summary>
        /// Per channel, how far a correct float32 kernel's 1/sqrt(var + eps) can be from the exact one. The
        /// mean is rounded to float32 (error about u * max|x|, u = 2^-24), and the variance update uses
        /// x - mean, so var is off by about u * max|x| * sigma; 1/std then moves by half that relative to
        /// var + eps. With few values per channel and two of them close (sigma small, var + eps near eps)
        /// that is thousands of ulps: two values 0.07 apart around 4.5 already give 3e-6 relative. The
        /// bound allows 16 u for each rounding; it is added to the usual tolerance, never replaces it.
        /// </summary>
        public static double[] InvStdRoundingBound(double[] x, double[] invStd, int n, int c, int hw, double eps = 1e-5)
        {
            const double u16 = 16.0 / (1 << 24);
            var bound = new double[c];
            for (int ch = 0; ch < c; ch++)
            {
                double maxAbs = 0;
                for (int b = 0; b < n; b++)
                    for (int j = 0; j < hw; j++) maxAbs = Math.Max(maxAbs, Math.Abs(x[(b * c + ch) * hw + j]));
                double varEps = 1 / (invStd[ch] * invStd[ch]);
                double sigma = Math.Sqrt(Math.Max(0, varEps - eps));
                bound[ch] = invStd[ch] * u16 * (2 + maxAbs * sigma / varEps);
            }
            return bound;
        }

        public static double[] ForwardEval(double[] x, double[] gamma, double[] beta, double[] runningMean, double[] runningVar,
            int n, int c, int hw, double eps = 1e-5)
        {
            var y = new double[n * c * hw];
            for (int i = 0; i < y.Length; i++)
            {
                int ch = i / hw % c;
                y[i] = (x[i] - runningMean[ch]) / Math.Sqrt(runningVar[ch] + eps) * gamma[ch] + beta[ch];
            }
            return y;
        }

        public static BackwardResult Backward(double[] x, double[] dy, double[] gamma, double[] saveMean, double[] saveInvStd,
            int n, int c, int hw)
        {
            int m = n * hw;
            var dx = new double[n * c * hw];
            var dgamma = new double[c];
            var dbeta = new double[c];
            for (int i = 0; i < dx.Length; i++)
            {
                int ch = i / hw % c;
                dbeta[ch] += dy[i];
                dgamma[ch] += dy[i] * (x[i] - saveMean[ch]) * saveInvStd[ch];
            }
            for (int i = 0; i < dx.Length; i++)
            {
                int ch = i / hw % c;
                double xhat = (x[i] - saveMean[ch]) * saveInvStd[ch];
                dx[i] = gamma[ch] * saveInvStd[ch] / m * (m * dy[i] - dbeta[ch] - xhat * dgamma[ch]);
            }
            return new BackwardResult(dx, dgamma, dbeta);
        }
    }
}
