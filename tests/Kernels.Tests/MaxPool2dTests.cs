using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class MaxPool2dTests
{
    /// <summary>The maxpool case's shapes, as columns: N, C, H, W, kernel, stride, pad.</summary>
    public static TheoryData<int, int, int, int, int, int, int> Shapes()
        => TheoryRows.Of(MaxPoolForwardCase.Shapes.Select(s => (s.N, s.C, s.H, s.W, s.Kernel, s.Stride, s.Pad)));

    private static Pool2dShape Shape(int n, int c, int h, int w, int k, int s, int p) => new(n, c, h, w, k, s, p);

    /// <summary>Distinct values 0.01 apart in random order: no ties, and finite differences never change the argmax.</summary>
    private static float[] Distinct(Random rng, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (i - count / 2) * 0.01f;
        rng.Shuffle(values);
        return values;
    }

    private static void RunAndCompare(Device dev, float[] xHost, float[] dyHost, Pool2dShape s, int seed)
    {
        using var x = dev.Upload<float>(xHost);
        using var dy = dev.Upload<float>(dyHost);
        using var y = Numerics.Poisoned(dev, s.OutputLength);
        using var argmax = dev.Upload<int>(Enumerable.Repeat(-7, s.OutputLength).ToArray());
        using var dx = Numerics.Poisoned(dev, s.InputLength);

        MaxPool2d.Forward(dev, x.View, y.View, argmax.View, s);
        MaxPool2d.Backward(dev, dy.View, argmax.View, dx.View, s);

        var (yRef, argmaxRef) = MaxPool2d.Reference.Forward(Numerics.ToDouble(xHost), s);
        Numerics.AssertClose(yRef, dev.Download<float>(y.View), rtol: 0, atol: 0, what: $"maxpool y {s}", seed: seed);
        Assert.Equal(argmaxRef, dev.Download<int>(argmax.View));
        Numerics.AssertClose(MaxPool2d.Reference.Backward(Numerics.ToDouble(dyHost), argmaxRef, s), dev.Download<float>(dx.View),
            what: $"maxpool dx {s}", seed: seed);
    }

    /// <summary>Small integers make ties common; kernel and reference must agree on which element wins and gets the gradient.</summary>
    [Theory]
    [MemberData(nameof(Shapes))]
    public void Forward_and_backward_match_reference_with_ties(int n, int c, int h, int w, int k, int st, int p) => TestDevice.Use(dev =>
    {
        var s = Shape(n, c, h, w, k, st, p);
        var rng = Numerics.NewRandom(out int seed);
        float[] x = new float[s.InputLength];
        for (int i = 0; i < x.Length; i++) x[i] = rng.Next(3);
        RunAndCompare(dev, x, Numerics.Uniform(rng, s.OutputLength), s, seed);
    });

    /// <summary>PyTorch's rule, written out independently of the reference: the first maximum in row-major window order wins.</summary>
    [Fact]
    public void Ties_go_to_the_first_maximum_in_row_major_order() => TestDevice.Use(dev =>
    {
        // Constant input: every window's winner is its first in-bounds element.
        var s = new Pool2dShape(1, 2, 5, 6, 3, 2, 1);
        using var x = dev.Upload<float>(Enumerable.Repeat(0.5f, s.InputLength).ToArray());
        using var y = Numerics.Poisoned(dev, s.OutputLength);
        using var argmax = dev.Allocate<int>(s.OutputLength);
        MaxPool2d.Forward(dev, x.View, y.View, argmax.View, s);
        int[] got = dev.Download<int>(argmax.View);
        for (int plane = 0; plane < s.N * s.C; plane++)
            for (int oh = 0; oh < s.OutH; oh++)
                for (int ow = 0; ow < s.OutW; ow++)
                {
                    int expected = Math.Max(oh * s.Stride - s.Pad, 0) * s.W + Math.Max(ow * s.Stride - s.Pad, 0);
                    Assert.Equal(expected, got[(plane * s.OutH + oh) * s.OutW + ow]);
                }
        Assert.All(dev.Download<float>(y.View), v => Assert.Equal(0.5f, v));

        // One 3x3 window holding 5 at (0,1), (1,0), (1,2), (2,2): (0,1) wins, and only it gets the gradient.
        var one = new Pool2dShape(1, 1, 3, 3, 3, 1, 0);
        using var x2 = dev.Upload<float>([0f, 5f, 1f, 5f, 2f, 5f, 0f, 0f, 5f]);
        using var y2 = Numerics.Poisoned(dev, 1);
        using var argmax2 = dev.Allocate<int>(1);
        using var dy2 = dev.Upload<float>([3f]);
        using var dx2 = Numerics.Poisoned(dev, 9);
        MaxPool2d.Forward(dev, x2.View, y2.View, argmax2.View, one);
        MaxPool2d.Backward(dev, dy2.View, argmax2.View, dx2.View, one);
        Assert.Equal([1], dev.Download<int>(argmax2.View));
        Assert.Equal([0f, 3f, 0f, 0f, 0f, 0f, 0f, 0f, 0f], dev.Download<float>(dx2.View));
    });

    /// <summary>
    /// PyTorch's max-pool propagates NaN (`val > maxval || isnan(val)`): a NaN takes the window, a later larger value
    /// does not displace it, the last NaN in row-major order wins, and the gradient goes to it.
    /// </summary>
    [Fact]
    public void NaN_takes_the_window_as_in_pytorch() => TestDevice.Use(dev =>
    {
        var s = new Pool2dShape(1, 2, 3, 3, 3, 1, 0);
        float nan = float.NaN;
        float[] xHost =
        [
            0f, nan, 9f, 5f, nan, 2f, 7f, 1f, 3f,   // two NaNs: the second (index 4) wins over them and over 9
            1f, 2f, nan, 9f, 8f, 7f, 6f, 5f, 4f,    // one NaN (index 2): the 9 after it does not displace it
        ];
        int[] expectedArgmax = [4, 2];
        using var x = dev.Upload<float>(xHost);
        using var y = dev.Upload<float>([0f, 0f]);
        using var argmax = dev.Allocate<int>(2);
        using var dy = dev.Upload<float>([3f, 4f]);
        using var dx = Numerics.Poisoned(dev, s.InputLength);
        MaxPool2d.Forward(dev, x.View, y.View, argmax.View, s);
        MaxPool2d.Backward(dev, dy.View, argmax.View, dx.View, s);

        Assert.All(dev.Download<float>(y.View), v => Assert.True(float.IsNaN(v), $"max-pool of a window holding NaN gave {v}"));
        Assert.Equal(expectedArgmax, dev.Download<int>(argmax.View));
        Assert.Equal(expectedArgmax, MaxPool2d.Reference.Forward(Numerics.ToDouble(xHost), s).Argmax);
        float[] expectedDx = new float[s.InputLength];
        expectedDx[4] = 3f;
        expectedDx[9 + 2] = 4f;
        Assert.Equal(expectedDx, dev.Download<float>(dx.View));
    });

    [Theory]
    [InlineData(2, 2, 7, 7, 3, 2, 1)]
    [InlineData(1, 2, 6, 5, 3, 1, 1)]
    [InlineData(1, 1, 4, 4, 2, 2, 0)]
    public void Backward_reference_matches_finite_differences(int n, int c, int h, int w, int k, int st, int p)
    {
        var s = Shape(n, c, h, w, k, st, p);
        var rng = Numerics.NewRandom(out int seed);
        double[] x = Numerics.ToDouble(Distinct(rng, s.InputLength));
        double[] g = Numerics.ToDouble(Numerics.Uniform(rng, s.OutputLength));
        double[] analytic = MaxPool2d.Reference.Backward(g, MaxPool2d.Reference.Forward(x, s).Argmax, s);
        Numerics.AssertFiniteDifference(v => Numerics.Dot(g, MaxPool2d.Reference.Forward(v, s).Y), x, analytic, rng,
            samples: s.InputLength, what: $"maxpool dx {s} (seed {seed})");
    }

    [Fact]
    public void Shape_validation_and_launchers_reject_bad_arguments() => TestDevice.Use(dev =>
    {
        var s = new Pool2dShape(2, 3, 7, 7, 3, 2, 1);
        Assert.Equal(4, s.OutH);
        Assert.Equal(4, s.OutW);
        Assert.Equal(2 * 3 * 49, s.InputLength);
        Assert.Equal(2 * 3 * 16, s.OutputLength);
        s.Validate();

        Assert.Contains("positive", Assert.Throws<ArgumentException>(() => new Pool2dShape(0, 3, 7, 7, 3, 2, 1).Validate()).Message);
        Assert.Contains("stride", Assert.Throws<ArgumentException>(() => new Pool2dShape(1, 1, 7, 7, 3, 0, 1).Validate()).Message);
        Assert.Contains("pad", Assert.Throws<ArgumentException>(() => new Pool2dShape(1, 1, 7, 7, 3, 2, 2).Validate()).Message);
        Assert.Contains("does not fit", Assert.Throws<ArgumentException>(() => new Pool2dShape(1, 1, 2, 7, 3, 1, 0).Validate()).Message);

        using var x = dev.Allocate<float>(s.InputLength);
        using var y = dev.Allocate<float>(s.OutputLength);
        using var shortArgmax = dev.Allocate<int>(s.OutputLength - 1);
        var e = Assert.Throws<ArgumentException>(() => MaxPool2d.Forward(dev, x.View, y.View, shortArgmax.View, s));
        Assert.Contains("MaxPool2d.Forward", e.Message);
        Assert.Contains("'argmax'", e.Message);
        e = Assert.Throws<ArgumentException>(() => MaxPool2d.Backward(dev, y.View, shortArgmax.View, x.View, s));
        Assert.Contains("MaxPool2d.Backward", e.Message);
        Assert.Throws<ArgumentException>(() => MaxPool2d.Forward(dev, x.View, y.View, shortArgmax.View, new Pool2dShape(1, 1, 7, 7, 3, 2, 2)));
    });
}
