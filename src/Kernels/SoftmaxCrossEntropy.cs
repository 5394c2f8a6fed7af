using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// Fused softmax + cross-entropy with mean reduction (nn.CrossEntropyLoss's default): logits
/// [n, classes], integer labels [n]. The forward keeps the softmax probabilities for the backward,
/// writes the mean loss and the number of rows whose first argmax equals the label.
/// <para>
/// The forward runs as ONE group: each thread owns rows t, t + G, t + 2G, ... and the per-thread
/// partial sums are combined by a tree in shared memory. The order of every addition is fixed by
/// the shape and the group size, so loss and accuracy are bitwise repeatable on a given device,
/// with no float atomics and no scratch buffer. A classifier head has a few hundred rows of ten
/// classes, so one group is plenty.
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
    /// <summary>Largest group of the forward's reduction (a CUDA Tile x Tile group).</summary>
    private const int MaxGroup = 256;

    // exp and log go through exp2 and log2, which PTX has natively (ex2, lg2); the natural-base
    // versions need ILGPU.Algorithms' intrinsics, and this keeps the kernel compilable without them.
    // Both must be IntrinsicMath.CPUOnly's: ILGPU 1.5.3 does not remap MathF.Log2, which would become an
    // unresolved `.extern .func Log2` that NVIDIA's assembler and the driver refuse.
    private const float Log2E = 1.4426950408889634f;
    private const float Ln2 = 0.6931471805599453f;

    // ---- kernels ----

    [KernelName("softmax_xent_fwd")]
    internal static void ForwardKernel(ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> probs,
        ArrayView<float> loss, ArrayView<int> correct, int n, int classes)
    {
        var lossPart = SharedMemory.Allocate<float>(MaxGroup);
        var correctPart = SharedMemory.Allocate<int>(MaxGroup);
        int t = Group.IdxX, size = Group.DimX;

        float lossSum = 0f;
        int hits = 0;
        for (int r = t; r < n; r += size)
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
                lossSum += IntrinsicMath.CPUOnly.Log2(sum) * Ln2 - (logits[row + label] - max);
                if (argmax == label) hits++;
            }
        }

        lossPart[t] = lossSum;
        correctPart[t] = hits;
        Group.Barrier();
        for (int stride = 1; stride < size; stride *= 2)
        {
            if (t % (2 * stride) == 0 && t + stride < size)
            {
                lossPart[t] += lossPart[t + stride];
                correctPart[t] += correctPart[t + stride];
            }
            Group.Barrier();
        }
        if (t == 0)
        {
            loss[0] = lossPart[0] / n;
            correct[0] = correctPart[0];
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
        int group = Math.Min(dev.Tuning.GroupSize, MaxGroup);
        dev.Kernel("softmax_xent_fwd", acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(ForwardKernel))
            (dev.Stream, new KernelConfig(1, group), logits, labels, probs, loss, correct, n, classes);
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
