using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class SoftmaxCrossEntropyTests
{
    private static int[] RandomLabels(Random rng, int n, int classes)
    {
        var labels = new int[n];
        for (int i = 0; i < n; i++) labels[i] = rng.Next(classes);
        return labels;
    }

    private static (float[] Probs, float Loss, int Correct) RunForward(Device dev, float[] logits, int[] labels, int n, int classes)
    {
        using var lb = dev.Upload<float>(logits);
        using var yb = dev.Upload<int>(labels);
        using var probs = Numerics.Poisoned(dev, n * classes);
        using var loss = Numerics.Poisoned(dev, 1);
        using var correct = dev.Upload<int>(new[] { -1 });
        SoftmaxCrossEntropy.Forward(dev, lb.View, yb.View, probs.View, loss.View, correct.View, n, classes);
        return (dev.Download<float>(probs.View), dev.Download<float>(loss.View)[0], dev.Download<int>(correct.View)[0]);
    }

    private static void AssertForwardMatches(Device dev, float[] logits, int[] labels, int n, int classes, int seed, string what)
    {
        var (probs, loss, correct) = RunForward(dev, logits, labels, n, classes);
        var expected = SoftmaxCrossEntropy.Reference.Forward(Numerics.ToDouble(logits), labels, n, classes);
        Numerics.AssertClose(expected.Probs, probs, what: what + " probs", seed: seed);
        Numerics.AssertClose(new[] { expected.Loss }, new[] { loss }, what: what + " loss", seed: seed);
        Assert.Equal(expected.Correct, correct);
    }

    [Fact]
    public void Forward_counts_the_first_max_on_ties() => TestDevice.Use(dev =>
    {
        // Row 0 ties classes 1 and 2 with label 1 (correct); row 1 ties classes 0 and 1 with label 1 (not correct).
        // Then both rows tie classes 1 and 2 with label 2: the first max wins, so nothing is correct.
        float[] logits = { 0f, 3f, 3f, 3f, 3f, 0f };
        var (_, _, correct) = RunForward(dev, logits, new[] { 1, 1 }, 2, 3);
        Assert.Equal(1, correct);
        (_, _, correct) = RunForward(dev, new[] { 0f, 3f, 3f, 0f, 3f, 3f }, new[] { 2, 2 }, 2, 3);
        Assert.Equal(0, correct);
    });

    [Fact]
    public void Forward_is_finite_and_matches_on_extreme_logits() => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        const int n = 6, classes = 10;
        var logits = new float[n * classes];
        for (int i = 0; i < logits.Length; i++) logits[i] = rng.Next(3) switch { 0 => -80f, 1 => 80f, _ => (float)(rng.NextDouble() * 2 - 1) };
        logits[0] = 80f; // row 0 has a max; label it where the logit is -80 for a loss near 160
        logits[1] = -80f;
        int[] labels = RandomLabels(rng, n, classes);
        labels[0] = 1;
        var (probs, loss, _) = RunForward(dev, logits, labels, n, classes);
        Assert.True(float.IsFinite(loss), $"loss {loss} (seed {seed})");
        Assert.All(probs, p => Assert.True(float.IsFinite(p)));
        AssertForwardMatches(dev, logits, labels, n, classes, seed, "xent extreme");
    });

    [Fact]
    public void Forward_is_bitwise_repeatable() => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        const int n = 41, classes = 10;
        float[] logits = Numerics.Uniform(rng, n * classes, -3f, 3f);
        int[] labels = RandomLabels(rng, n, classes);
        float first = RunForward(dev, logits, labels, n, classes).Loss;
        float second = RunForward(dev, logits, labels, n, classes).Loss;
        Assert.True(BitConverter.SingleToInt32Bits(first) == BitConverter.SingleToInt32Bits(second), $"{first:R} vs {second:R} (seed {seed})");
    });

    [Fact]
    public void Labels_out_of_range_contribute_nothing_and_keep_their_probabilities() => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        const int n = 4, classes = 3;
        float[] logits = Numerics.Uniform(rng, n * classes, -2f, 2f);
        int[] labels = { 0, -1, classes, 2 };
        AssertForwardMatches(dev, logits, labels, n, classes, seed, "xent bad labels");
        var expected = SoftmaxCrossEntropy.Reference.Forward(Numerics.ToDouble(logits), labels, n, classes);
        // The reference's rule, written out: the two valid rows' -log p summed, divided by all four rows.
        double sum = 0;
        foreach (int r in new[] { 0, 3 }) sum += -Math.Log(expected.Probs[r * classes + labels[r]]);
        Assert.InRange(expected.Loss, sum / n - 1e-12, sum / n + 1e-12);

        using var pb = dev.Upload<float>(Array.ConvertAll(expected.Probs, p => (float)p));
        using var yb = dev.Upload<int>(labels);
        using var d = Numerics.Poisoned(dev, n * classes);
        SoftmaxCrossEntropy.Backward(dev, pb.View, yb.View, d.View, n, classes, 0.25f);
        float[] got = dev.Download<float>(d.View);
        for (int c = 0; c < classes; c++)
        {
            Assert.Equal((float)expected.Probs[1 * classes + c] * 0.25f, got[1 * classes + c], 1e-6f);
            Assert.Equal((float)expected.Probs[2 * classes + c] * 0.25f, got[2 * classes + c], 1e-6f);
        }
    });

    /// <summary>A data-parallel replica's scale: 1/N of a global batch four times larger (the mean's 1/n is the case's own, <see cref="OpCaseTests"/>).</summary>
    [Theory]
    [InlineData(0.25)]
    [InlineData(0.5)]
    public void Backward_with_a_replica_scale_matches_reference(double scaleOfMean) => WideGroupDevice.Both(dev =>
    {
        foreach (var (n, classes) in LossCase.Shapes)
        {
            CaseAsserts.Passes(r => new LossBackwardCase(dev, r, n, classes, scaleOfMean: scaleOfMean), LossBackwardCase.Default);
        }
    });

    [Theory]
    [InlineData(4, 10)]
    [InlineData(3, 3)]
    public void Reference_backward_is_the_gradient_of_the_mean_loss(int n, int classes)
    {
        var rng = Numerics.NewRandom(out _);
        double[] logits = Numerics.ToDouble(Numerics.Uniform(rng, n * classes, -3f, 3f));
        int[] labels = RandomLabels(rng, n, classes);
        var probs = SoftmaxCrossEntropy.Reference.Forward(logits, labels, n, classes).Probs;
        double[] analytic = SoftmaxCrossEntropy.Reference.Backward(probs, labels, n, classes, 1.0 / n);
        Numerics.AssertFiniteDifference(v => SoftmaxCrossEntropy.Reference.Forward(v, labels, n, classes).Loss,
            logits, analytic, rng, samples: n * classes, what: "xent dlogits");
    }

    [Fact]
    public void Launchers_reject_short_operands_and_bad_shapes() => TestDevice.Use(dev =>
    {
        using var logits = dev.Allocate<float>(5 * 10);
        using var labels = dev.Allocate<int>(4);
        using var probs = dev.Allocate<float>(5 * 10);
        using var loss = dev.Allocate<float>(1);
        using var correct = dev.Allocate<int>(1);
        var e = Assert.Throws<ArgumentException>(() => SoftmaxCrossEntropy.Forward(dev, logits.View, labels.View, probs.View, loss.View, correct.View, 5, 10));
        Assert.Contains("SoftmaxCrossEntropy.Forward", e.Message);
        Assert.Contains("'labels'", e.Message);
        e = Assert.Throws<ArgumentException>(() => SoftmaxCrossEntropy.Forward(dev, logits.View, labels.View, probs.View, loss.View, correct.View, 4, 0));
        Assert.Contains("classes=0", e.Message);
        e = Assert.Throws<ArgumentException>(() => SoftmaxCrossEntropy.Backward(dev, probs.View, labels.View, logits.View, 4, 10, float.NaN));
        Assert.Contains("scale", e.Message);
        e = Assert.Throws<ArgumentException>(() => SoftmaxCrossEntropy.Backward(dev, probs.View, labels.View, logits.View.SubView(0, 39), 4, 10));
        Assert.Contains("'dlogits'", e.Message);
    });
}
