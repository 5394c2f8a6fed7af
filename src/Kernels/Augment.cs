using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// torchvision's RandomCrop(h x w, padding=pad) -> RandomHorizontalFlip -> ToTensor -> Normalize, done
/// on the device from uint8 images [n, c, h, w] (CHW per image, as CIFAR-10's binary stores them).
/// The random choices are made on the host and passed in: crops [2n] holds (top, left) of each crop
/// in the zero-padded image, each in [0, 2 * pad]; flips [n] holds 0 or 1. Padding is value 0 of the
/// uint8 image, i.e. -mean/std after normalisation, as torchvision pads before ToTensor.
/// With pad 0, crops 0 and flips 0 this is plain ToTensor + Normalize (evaluation).
/// </summary>
public static class Augment
{
    // ---- kernels ----

    /// <summary>
    /// out[i, ch, y, x] = (v / 255 - mean[ch]) / std[ch], v = padded[i, ch, y + top, xs + left],
    /// xs = flip ? w - 1 - x : x. A corner outside [0, 2 * pad] only reads more padding (never out of
    /// bounds); any non-zero flip flips.
    /// </summary>
    [KernelName("augment_crop_flip_normalize")]
    internal static void ApplyKernel(Index1D thread, ArrayView<byte> images, ArrayView<int> crops, ArrayView<int> flips, ArrayView<float> output,
        ArrayView<float> mean, ArrayView<float> std, int c, int h, int w, int pad, int n, int stride)
    {
        for (int index = thread; index < n; index += stride)
        {
            int x = index % w;
            int rest = index / w;
            int y = rest % h;
            rest /= h;
            int ch = rest % c;
            int i = rest / c;

            int xs = flips[i] != 0 ? w - 1 - x : x;
            int sy = y + crops[2 * i] - pad;
            int sx = xs + crops[2 * i + 1] - pad;
            float v = 0f;
            if (sy >= 0 && sy < h && sx >= 0 && sx < w)
            {
                v = images[((i * c + ch) * h + sy) * w + sx];
            }
            output[index] = (v / 255f - mean[ch]) / std[ch];
        }
    }

    // ---- launchers ----

    /// <summary>Writes output [n, c, h, w] from images [n, c, h, w] with the given crops, flips, mean and std (see the class summary).</summary>
    public static void Apply(Device dev, ArrayView<byte> images, ArrayView<int> crops, ArrayView<int> flips, ArrayView<float> output,
        ArrayView<float> mean, ArrayView<float> std, int n, int c, int h, int w, int pad)
    {
        using var profile = dev.Profile("augment", OpCost.Augment((long)n * c * h * w));
        ArgumentNullException.ThrowIfNull(dev);
        if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || pad < 0)
        {
            throw new ArgumentException($"Augment.Apply: n, c, h, w must be positive and pad non-negative (got n={n}, c={c}, h={h}, w={w}, pad={pad}).");
        }
        long total = (long)n * c * h * w;
        if (total > int.MaxValue)
        {
            throw new ArgumentException($"Augment.Apply: {total} pixels exceed the kernel's 32-bit indexing.");
        }
        Check.AtLeast("Augment.Apply", "images", images, total);
        Check.AtLeast("Augment.Apply", "crops", crops, 2L * n);
        Check.AtLeast("Augment.Apply", "flips", flips, n);
        Check.AtLeast("Augment.Apply", "output", output, total);
        Check.AtLeast("Augment.Apply", "mean", mean, c);
        Check.AtLeast("Augment.Apply", "std", std, c);
        int count = checked((int)total), threads = dev.GridStrideThreads(count);
        dev.Kernel("augment_crop_flip_normalize", acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<byte>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int, int, int>(ApplyKernel))
            (dev.Stream, threads, images, crops, flips, output, mean, std, c, h, w, pad, count, threads);
    }

    // ---- float64 references ----

    public static class Reference
    {
        /// <summary>Pads each image explicitly with zeros, crops, flips and normalises, in that order.</summary>
        public static double[] Apply(byte[] images, int[] crops, int[] flips, double[] mean, double[] std, int n, int c, int h, int w, int pad)
        {
            int ph = h + 2 * pad, pw = w + 2 * pad;
            var output = new double[n * c * h * w];
            var padded = new double[ph * pw];
            for (int i = 0; i < n; i++)
            {
                for (int ch = 0; ch < c; ch++)
                {
                    Array.Clear(padded);
                    for (int y = 0; y < h; y++)
                        for (int x = 0; x < w; x++)
                            padded[(y + pad) * pw + x + pad] = images[((i * c + ch) * h + y) * w + x];
                    int top = crops[2 * i], left = crops[2 * i + 1];
                    for (int y = 0; y < h; y++)
                    {
                        for (int x = 0; x < w; x++)
                        {
                            int xs = flips[i] != 0 ? w - 1 - x : x;
                            double v = padded[(y + top) * pw + xs + left];
                            output[((i * c + ch) * h + y) * w + x] = (v / 255.0 - mean[ch]) / std[ch];
                        }
                    }
                }
            }
            return output;
        }
    }
}
