using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// Fused softmax + cross-entropy with mean reduction (nn.CrossEntropyLoss's default): logits
/// [n, classes], integer labels [n]. The forward keeps the softmax probabilities for the backward,
/// writes the mean loss and the number of rows whose first argmax equals the label.
/// <para>
/// The forward spreads the rows over the whole device: one row per thread, groups of up to
/// <see cref="MaxGroup"/> threads, each group summing its rows' losses and hits by a tree in shared
/// memory into one partial per group; a second, one-group kernel adds the partials in group order.
/// The order of every addition is fixed by the shape and the group size, so loss and accuracy are
/// bitwise repeatable on a given device, with no float atomics. (A single group looping over every
/// row, as before, left all but one SM of a GPU idle.)
/// </para>
/// <para>
/// A label outside [0, classes) never causes an out-of-bounds read: its row still gets its
/// probabilities, contributes 0 to the loss sum and to the correct count (the mean still divides
/// by n), and its gradient is probs * scale with no one-hot term. The host validates labels when it
/// loads data, so this only keeps a bad label from corrupting memory.
/// </para>
/// </summary>
public static class SoftmaxCrossEntropy
{
    /// <summary>Largest group of the forward's reductions (a CUDA Tile x Tile group).</summary>
    private const int MaxGroup = 256;

    // exp and log go through exp2 and log2, which PTX has natively (ex2, lg2); the natural-base
    // versions need ILGPU.Algorithms' intrinsics, and this keeps the kernel compilable without them.
    // Both must be IntrinsicMath.CPUOnly's: ILGPU 1.5.3 does not remap MathF.Log2, which would become an
    // unresolved `.extern .func Log2` that NVIDIA's assembler and the driver refuse.
    private const float Log2E = 1.4426950408889634f;
    private const float Ln2 = 0.6931471805599453f;

    // ---- kernels ----

    /// <summary>
    /// Row r = group * size + thread: probs[r] = softmax(logits[r]); partial[group] = the group's sum of
    /// -log probs[r, label_r], partial[groups + group] = its count of rows whose first argmax is the label.
    /// </summary>
    [KernelName("softmax_xent_fwd")]
    [GroupSize(nameof(GroupThreads))]
    internal static void ForwardKernel(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> probs,
        ArrayView<float> partial, int n, int classes)
    {
        var lossPart = SharedMemory.Allocate<float>(MaxGroup);
        var hitPart = SharedMemory.Allocate<float>(MaxGroup);
        int t = Group.IdxX, size = Group.DimX, groups = Grid.DimX;
        int r = Grid.IdxX * size + t;

        float lossValue = 0f, hit = 0f;
        if (r < n)
        {
            int row = r * classes;
            float max = logits[row];
            int argmax = 0;
            for (int c = 1; c < classes; c++)
            {
                float v = logits[row + c];
                if (v > max)
                {
                    max = v;
                    argmax = c;
                }
            }
            float sum = 0f;
            for (int c = 0; c < classes; c++)
            {
                float e = IntrinsicMath.CPUOnly.Exp2((logits[row + c] - max) * Log2E);
                probs[row + c] = e;
                sum += e;
            }
            float inv = 1f / sum;
            for (int c = 0; c < classes; c++)
            {
                probs[row + c] *= inv;
            }
            int label = labels[r];
            if (label >= 0 && label < classes)
            {
                // -log softmax[label] = log(sum_c exp(z_c - max)) - (z_label - max); sum >= 1, so finite.
                lossValue = IntrinsicMath.CPUOnly.Log2(sum) * Ln2 - (logits[row + label] - max);
                if (argmax == label) hit = 1f;
            }
        }

        TreeSum(lossPart, hitPart, t, size, lossValue, hit);
        if (t == 0)
        {
            partial[Grid.IdxX] = lossPart[0];
            partial[groups + Grid.IdxX] = hitPart[0];
        }
    }

    /// <summary>One group: loss[0] = (sum of the groups' loss partials, in group order) / n; correct[0] = the hits.</summary>
    [KernelName("softmax_xent_loss")]
    [GroupSize(nameof(GroupThreads))]
    internal static void LossKernel(ArrayView<float> partial, ArrayView<float> loss, ArrayView<int> correct, int n, int groups)
    {
        var lossPart = SharedMemory.Allocate<float>(MaxGroup);
        var hitPart = SharedMemory.Allocate<float>(MaxGroup);
        int t = Group.IdxX, size = Group.DimX;
        float lossSum = 0f, hits = 0f;
        for (int g = t; g < groups; g += size)
        {
            lossSum += partial[g];
            hits += partial[groups + g];
        }
        TreeSum(lossPart, hitPart, t, size, lossSum, hits);
        if (t == 0)
        {
            loss[0] = lossPart[0] / n;
            correct[0] = (int)hitPart[0]; // counts up to 2^24 are exact in float32
        }
    }

    /// <summary>Sums two values over the group by a fixed-order tree; the results are in a[0] and b[0].</summary>
    private static void TreeSum(ArrayView<float> a, ArrayView<float> b, int t, int size, float va, float vb)
    {
        a[t] = va;
        b[t] = vb;
        Group.Barrier();
        for (int stride = 1; stride < size; stride *= 2)
        {
            if (t % (2 * stride) == 0 && t + stride < size)
            {
                a[t] += a[t + stride];
                b[t] += b[t + stride];
            }
            Group.Barrier();
        }
    }

    /// <summary>dlogits[r, c] = (probs[r, c] - [c == label_r]) * scale.</summary>
    [KernelName("softmax_xent_bwd")]
    internal static void BackwardKernel(Index1D index, ArrayView<float> probs, ArrayView<int> labels, ArrayView<float> dlogits, int classes, float scale, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int r = i / classes, c = i - r * classes;
            float g = probs[i];
            if (labels[r] == c) g -= 1f;
            dlogits[i] = g * scale;
        }
    }

    // ---- launchers ----

    /// <summary>
    /// probs [n, classes] = softmax(logits), loss [1] = mean_r -log probs[r, label_r] (computed from the
    /// max-subtracted log-sum-exp, finite for any finite logits), correct [1] = rows whose first argmax
    /// equals the label. See the class remarks for labels out of range.
    /// </summary>
    public static void Forward(Device dev, ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> probs,
        ArrayView<float> loss, ArrayView<int> correct, int n, int classes)
    {
        using var profile = dev.Profile("softmax_xent_fwd", OpCost.SoftmaxCrossEntropy(n, classes));
        ValidateShape(dev, nameof(Forward), n, classes);
        Check.AtLeast("SoftmaxCrossEntropy.Forward", "logits", logits, (long)n * classes);
        Check.AtLeast("SoftmaxCrossEntropy.Forward", "labels", labels, n);
        Check.AtLeast("SoftmaxCrossEntropy.Forward", "probs", probs, (long)n * classes);
        Check.AtLeast("SoftmaxCrossEntropy.Forward", "loss", loss, 1);
        Check.AtLeast("SoftmaxCrossEntropy.Forward", "correct", correct, 1);
        if (n >= 1 << 24)
        {
            throw new ArgumentException($"SoftmaxCrossEntropy.Forward: {n} rows exceed the 2^24 that the hit count holds exactly.");
        }
        int group = GroupThreads(dev.Tuning), groups = (n + group - 1) / group;
        var partial = Workspace.For(dev).Get(dev, 2L * groups);
        dev.Kernel("softmax_xent_fwd", acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int>(ForwardKernel))
            (dev.Stream, new KernelConfig(groups, group), logits, labels, probs, partial, n, classes);
        dev.Kernel("softmax_xent_loss", acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(LossKernel))
            (dev.Stream, new KernelConfig(1, group), partial, loss, correct, n, groups);
    }

    /// <summary>
    /// Overwrites dlogits [n, classes] = (probs - onehot(labels)) * scale. The gradient of the mean
    /// loss uses scale = 1/n; data parallelism passes 1/N of the global batch instead.
    /// </summary>
    public static void Backward(Device dev, ArrayView<float> probs, ArrayView<int> labels, ArrayView<float> dlogits, int n, int classes, float scale)
    {
        using var profile = dev.Profile("softmax_xent_bwd", OpCost.SoftmaxCrossEntropy(n, classes));
        ValidateShape(dev, nameof(Backward), n, classes);
        Check.AtLeast("SoftmaxCrossEntropy.Backward", "probs", probs, (long)n * classes);
        Check.AtLeast("SoftmaxCrossEntropy.Backward", "labels", labels, n);
        Check.AtLeast("SoftmaxCrossEntropy.Backward", "dlogits", dlogits, (long)n * classes);
        if (!float.IsFinite(scale))
        {
            throw new ArgumentException($"SoftmaxCrossEntropy.Backward: scale must be finite (got {scale}).", nameof(scale));
        }
        int count = checked((int)n * classes), threads = dev.GridStrideThreads(count);
        dev.Kernel("softmax_xent_bwd", acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, float, int, int>(BackwardKernel))
            (dev.Stream, threads, probs, labels, dlogits, classes, scale, count, threads);
    }

    /// <summary>The gradient of the mean loss: <see cref="Backward(Device, ArrayView{float}, ArrayView{int}, ArrayView{float}, int, int, float)"/> with scale 1/n.</summary>
    public static void Backward(Device dev, ArrayView<float> probs, ArrayView<int> labels, ArrayView<float> dlogits, int n, int classes)
        => Backward(dev, probs, labels, dlogits, n, classes, 1f / n);

    /// <summary>Threads in a group of the forward's two kernels.</summary>
    internal static int GroupThreads(KernelTuning t) => Math.Min(t.GroupSize, MaxGroup);

    private static void ValidateShape(Device dev, string method, int n, int classes)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (n <= 0 || classes <= 0)
        {
            throw new ArgumentException($"SoftmaxCrossEntropy.{method}: n and classes must be positive (got n={n}, classes={classes}).");
        }
        if ((long)n * classes > int.MaxValue)
        {
            throw new ArgumentException($"SoftmaxCrossEntropy.{method}: {(long)n * classes} logits exceed the kernel's 32-bit indexing.");
        }
    }

    // ---- float64 references ----

    public static class Reference
    {
        /// <summary>Softmax probabilities, mean loss and correct count, with the same out-of-range label rule as the kernel.</summary>
        public static (double[] Probs, double Loss, int Correct) Forward(double[] logits, int[] labels, int n, int classes)
        {
            var probs = new double[n * classes];
            double lossSum = 0;
            int correct = 0;
            for (int r = 0; r < n; r++)
            {
                int row = r * classes;
                double max = logits[row];
                int argmax = 0;
                for (int c = 1; c < classes; c++)
                {
                    if (logits[row + c] > max)
                    {
                        max = logits[row + c];
                        argmax = c;
                    }
                }
                double sum = 0;
                for (int c = 0; c < classes; c++) sum += Math.Exp(logits[row + c] - max);
                for (int c = 0; c < classes; c++) probs[row + c] = Math.Exp(logits[row + c] - max) / sum;
                int label = labels[r];
                if (label >= 0 && label < classes)
                {
                    lossSum += Math.Log(sum) - (logits[row + label] - max);
                    if (argmax == label) correct++;
                }
            }
            return (probs, lossSum / n, correct);
        }

        /// <summary>dlogits = (probs - onehot(labels)) * scale; with scale 1/n, the gradient of the mean loss.</summary>
        public static double[] Backward(double[] probs, int[] labels, int n, int classes, double scale)
        {
            var d = new double[n * classes];
            for (int r = 0; r < n; r++)
            {
                for (int c = 0; c < classes; c++)
                {
                    double g = probs[r * classes + c];
                    if (labels[r] == c) g -= 1;
                    d[r * classes + c] = g * scale;
                }
            }
            return d;
        }
    }
}
