using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class AugmentTests
{
    private static readonly float[] Mean = { 0.4914f, 0.4822f, 0.4465f };
    private static readonly float[] Std = { 0.2470f, 0.2435f, 0.2616f };

    private static byte[] RandomImages(Random rng, int count)
    {
        var images = new byte[count];
        rng.NextBytes(images);
        return images;
    }

    private static float[] Run(Device dev, byte[] images, int[] crops, int[] flips, int n, int c, int h, int w, int pad)
    {
        using var ib = dev.Upload<byte>(images);
        using var cb = dev.Upload<int>(crops);
        using var fb = dev.Upload<int>(flips);
        using var mb = dev.Upload<float>(Mean.AsSpan(0, c));
        using var sb = dev.Upload<float>(Std.AsSpan(0, c));
        using var output = Numerics.Poisoned(dev, n * c * h * w);
        Augment.Apply(dev, ib.View, cb.View, fb.View, output.View, mb.View, sb.View, n, c, h, w, pad);
        return dev.Download<float>(output.View);
    }

    private static double[] Reference(byte[] images, int[] crops, int[] flips, int n, int c, int h, int w, int pad)
        => Augment.Reference.Apply(images, crops, flips, Numerics.ToDouble(Mean[..c]), Numerics.ToDouble(Std[..c]), n, c, h, w, pad);

    [Fact]
    public void Crop_at_the_corner_shows_the_zero_padding_as_minus_mean_over_std() => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        const int n = 1, c = 3, h = 5, w = 6, pad = 2;
        byte[] images = RandomImages(rng, n * c * h * w);
        float[] got = Run(dev, images, new[] { 0, 0 }, new[] { 0 }, n, c, h, w, pad);
        for (int ch = 0; ch < c; ch++)
        {
            for (int y = 0; y < h; y++)
            {
                for (int x = 0; x < w; x++)
                {
                    double expected = y < pad || x < pad
                        ? -Mean[ch] / (double)Std[ch]
                        : (images[(ch * h + y - pad) * w + x - pad] / 255.0 - Mean[ch]) / Std[ch];
                    Numerics.AssertClose(new[] { expected }, new[] { got[(ch * h + y) * w + x] }, what: $"augment corner ch{ch} y{y} x{x}", seed: seed);
                }
            }
        }
    });

    [Fact]
    public void Centre_crop_without_flip_is_plain_normalisation_and_flip_mirrors() => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        const int n = 2, c = 3, h = 4, w = 5, pad = 3;
        byte[] images = RandomImages(rng, n * c * h * w);
        var plain = new double[images.Length];
        for (int i = 0; i < images.Length; i++)
        {
            int ch = i / (h * w) % c;
            plain[i] = (images[i] / 255.0 - Mean[ch]) / Std[ch];
        }
        Numerics.AssertClose(plain, Run(dev, images, new[] { pad, pad, pad, pad }, new[] { 0, 0 }, n, c, h, w, pad), what: "augment centre crop", seed: seed);
        Numerics.AssertClose(plain, Run(dev, images, new int[2 * n], new int[n], n, c, h, w, 0), what: "augment pad 0 (evaluation)", seed: seed);

        float[] flipped = Run(dev, images, new[] { pad, pad, 0, 0 }, new[] { 1, 1 }, n, c, h, w, pad);
        var mirrored = new double[w];
        for (int ch = 0; ch < c; ch++)
        {
            for (int y = 0; y < h; y++)
            {
                int row = (ch * h + y) * w; // image 0
                for (int x = 0; x < w; x++) mirrored[x] = plain[row + w - 1 - x];
                Numerics.AssertClose(mirrored, flipped[row..(row + w)], what: $"augment flip ch{ch} y{y}", seed: seed);
            }
        }
    });

    [Fact]
    public void Apply_rejects_short_operands_and_bad_shapes() => TestDevice.Use(dev =>
    {
        using var images = dev.Allocate<byte>(2 * 3 * 4 * 4);
        using var crops = dev.Allocate<int>(3);
        using var flips = dev.Allocate<int>(2);
        using var output = dev.Allocate<float>(2 * 3 * 4 * 4);
        using var mean = dev.Allocate<float>(3);
        var e = Assert.Throws<ArgumentException>(() => Augment.Apply(dev, images.View, crops.View, flips.View, output.View, mean.View, mean.View, 2, 3, 4, 4, 4));
        Assert.Contains("Augment.Apply", e.Message);
        Assert.Contains("'crops'", e.Message);
        e = Assert.Throws<ArgumentException>(() => Augment.Apply(dev, images.View, crops.View, flips.View, output.View, mean.View, mean.View, 1, 3, 4, 4, -1));
        Assert.Contains("pad=-1", e.Message);
        e = Assert.Throws<ArgumentException>(() => Augment.Apply(dev, images.View, flips.View, flips.View, output.View, mean.View, mean.View, 1, 4, 4, 4, 0));
        Assert.Contains("'mean'", e.Message);
    });
}
