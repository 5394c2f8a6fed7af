using Engine.Runner.Data;

namespace Engine.Runner.Tests;

/// <summary>The synthetic dataset, ImageDataset's Take and batch copies.</summary>
public class DataSetTests
{
    [Fact]
    public void Synthetic_is_deterministic_in_the_seed()
    {
        var (train, test) = SyntheticDataset.Generate(seed: 7, trainCount: 300, testCount: 50);
        var (train2, test2) = SyntheticDataset.Generate(seed: 7, trainCount: 300, testCount: 50);
        var (other, otherTest) = SyntheticDataset.Generate(seed: 8, trainCount: 300, testCount: 50);
        Assert.Equal(train.Images, train2.Images);
        Assert.Equal(test.Images, test2.Images);
        Assert.Equal(train.Mean, train2.Mean);
        Assert.NotEqual(train.Images, other.Images);
        Assert.NotEqual(test.Images, otherTest.Images);
        // The test split is not a copy of the start of the training split.
        Assert.False(train.Images.AsSpan(0, test.Images.Length).SequenceEqual(test.Images));
        // Every image differs from every other one (random shift, contrast, noise).
        Assert.Equal(train.Count, Enumerable.Range(0, train.Count).Select(i => Convert.ToBase64String(train.Image(i))).Distinct().Count());
    }

    [Fact]
    public void Synthetic_full_size_is_class_balanced_and_cifar_shaped()
    {
        var (train, test) = DatasetLoader.Load("synthetic", null, seed: 3);
        Assert.Equal((50_000, 10_000), (train.Count, test.Count));
        Assert.Equal(50_000 * 3072, train.Images.Length);
        Assert.All(train.ClassCounts(), n => Assert.Equal(5_000, n));
        Assert.All(test.ClassCounts(), n => Assert.Equal(1_000, n));
        Assert.Equal(train.Mean, test.Mean);
        for (int c = 0; c < 3; c++)
        {
            Assert.InRange(train.Mean[c], 0.3f, 0.7f);
            Assert.InRange(train.Std[c], 0.08f, 0.35f);
        }
        // Pixels use the range without saturating most of it.
        int saturated = train.Images.AsSpan(0, 1000 * 3072).Count((byte)0) + train.Images.AsSpan(0, 1000 * 3072).Count((byte)255);
        Assert.True(saturated < 1000 * 3072 / 100, $"{saturated} saturated pixels in the first 1000 images");
    }

    [Fact]
    public void Synthetic_classes_are_told_apart_by_a_simple_orientation_feature()
    {
        // A shift-invariant feature: the share of horizontal among horizontal + vertical absolute pixel
        // differences, which follows each class's stripe orientation. (A CNN does far better; this only
        // shows the labels carry signal that survives the shifts, distractors and noise.)
        var (train, _) = SyntheticDataset.Generate(seed: 11, trainCount: 2000, testCount: 0);
        var features = new double[train.Count][];
        for (int i = 0; i < train.Count; i++)
        {
            ReadOnlySpan<byte> image = train.Image(i);
            double h = 0, v = 0;
            for (int c = 0; c < 3; c++)
            {
                for (int y = 0; y < 31; y++)
                {
                    for (int x = 0; x < 31; x++)
                    {
                        int p = c * 1024 + y * 32 + x;
                        h += Math.Abs(image[p + 1] - image[p]);
                        v += Math.Abs(image[p + 32] - image[p]);
                    }
                }
            }
            features[i] = [h / (h + v)];
        }
        // A nearest-class-mean classifier on this one feature, fitted on the first half, scored on the second.
        var means = Enumerable.Range(0, 10).Select(k => Enumerable.Range(0, 1000).Where(i => train.Labels[i] == k).Average(i => features[i][0])).ToArray();
        int correct = Enumerable.Range(1000, 1000).Count(i =>
            Enumerable.Range(0, 10).MinBy(k => Math.Abs(features[i][0] - means[k])) == train.Labels[i]);
        Assert.True(correct > 160, $"nearest-mean accuracy {correct / 10.0}% is not above chance (10%)");
    }

    [Fact]
    public void Take_returns_a_prefix_or_itself()
    {
        var (train, _) = SyntheticDataset.Generate(seed: 1, trainCount: 30, testCount: 0);
        Assert.Same(train, train.Take(30));
        Assert.Same(train, train.Take(1000));
        ImageDataset small = train.Take(7);
        Assert.Equal(7, small.Count);
        Assert.Equal(train.Images.AsSpan(0, 7 * 3072).ToArray(), small.Images);
        Assert.Equal(train.Labels[..7], small.Labels);
        Assert.Equal(train.Mean, small.Mean);
        Assert.Equal(train.Name, small.Name);
        Assert.Equal(0, train.Take(0).Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => train.Take(-1));
    }

    [Fact]
    public void Batch_copies_the_selected_images_contiguously()
    {
        var (train, _) = SyntheticDataset.Generate(seed: 2, trainCount: 20, testCount: 0);
        int[] indices = [13, 0, 19, 13];
        var (images, labels) = train.GatherBatch(indices);
        Assert.Equal(4 * 3072, images.Length);
        for (int i = 0; i < indices.Length; i++)
        {
            Assert.True(train.Image(indices[i]).SequenceEqual(images.AsSpan(i * 3072, 3072)), $"batch image {i}");
            Assert.Equal(train.Labels[indices[i]], labels[i]);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => train.GatherBatch([20]));
        Assert.Throws<ArgumentException>(() => train.CopyBatch([1, 2], new byte[3072], new byte[2]));
    }
}
