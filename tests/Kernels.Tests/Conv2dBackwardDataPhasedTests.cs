using Engine.Kernels;
using Engine.Tests;

namespace Engine.Kernels.Tests;

/// <summary>Backward-data v2 (one dense GEMM per stride phase, the engine's Conv2d.BackwardData) and v1 against the float64 reference and each other.</summary>
public class Conv2dBackwardDataPhasedTests
{
    /// <summary>
    /// ResNet's kernels at strides 1 and 2 plus stride 3 (nine phases with 3, 2 or 1 taps of a 7x7),
    /// sizes that are not multiples of the tiles, odd and even images (phases of unequal size), a 1x1/2
    /// (three phases without taps, written as zeros), a 3x3/2 without padding, and images too small to
    /// hold every phase. Columns: N, C, H, W, K, R, S, stride, pad.
    /// </summary>
    public static TheoryData<int, int, int, int, int, int, int, int, int> Shapes => new()
    {
        { 2, 3, 7, 7, 5, 3, 3, 1, 1 },
        { 1, 6, 9, 9, 5, 1, 1, 2, 0 },
        { 2, 5, 8, 8, 6, 1, 1, 2, 0 },
        { 2, 3, 9, 8, 6, 3, 3, 2, 1 },
        { 1, 4, 8, 7, 9, 3, 3, 2, 0 },
        { 1, 3, 11, 11, 5, 7, 7, 2, 3 },
        { 2, 2, 10, 9, 3, 7, 7, 3, 3 },
        { 3, 5, 5, 6, 7, 3, 3, 2, 1 },
        { 1, 2, 1, 1, 3, 1, 1, 2, 0 },
        { 1, 2, 1, 2, 3, 3, 3, 2, 1 },
    };

    private static Conv2dShape Shape(int n, int c, int h, int w, int k, int r, int s, int stride, int pad)
        => new(n, c, h, w, k, r, s, stride, pad);

    /// <summary>As in <see cref="Conv2dTests"/>: each dx element sums at most K·R·S products of O(1) values.</summary>
    private static double Atol(Conv2dShape s) => Math.Max(1e-5, 1e-7 * s.K * s.R * s.S);

    private static void Check(Device dev, Conv2dShape shape, KernelTuning tuning, string label)
    {
        var rng = Numerics.NewRandom(out int seed);
        float[] dy = Numerics.Uniform(rng, (int)shape.OutputLength), wt = Numerics.Uniform(rng, (int)shape.WeightLength);
        using var dDy = dev.Upload<float>(dy);
        using var dW = dev.Upload<float>(wt);
        using var dDx = Numerics.Poisoned(dev, shape.InputLength);
        Conv2d.BackwardDataPhased(dev, dDy.View, dW.View, dDx.View, shape, tuning);
        Numerics.AssertClose(Conv2d.Reference.BackwardData(Numerics.ToDouble(dy), Numerics.ToDouble(wt), shape), dev.Download<float>(dDx.View),
            atol: Atol(shape), what: $"conv2d backward-data v2 {shape} {label}", seed: seed);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Matches_reference_on_both_devices(int n, int c, int h, int w, int k, int r, int s, int stride, int pad)
        => WideGroupDevice.Both(dev => Check(dev, Shape(n, c, h, w, k, r, s, stride, pad), dev.Tuning, "device tuning"));

    /// <summary>v1 (the gather GEMM over every tap) stays callable for the kernel bench, so it stays tested.</summary>
    [Theory]
    [MemberData(nameof(Shapes))]
    public void Gather_v1_matches_reference_on_both_devices(int n, int c, int h, int w, int k, int r, int s, int stride, int pad) => WideGroupDevice.Both(dev =>
    {
        var shape = Shape(n, c, h, w, k, r, s, stride, pad);
        var rng = Numerics.NewRandom(out int seed);
        float[] dy = Numerics.Uniform(rng, (int)shape.OutputLength), wt = Numerics.Uniform(rng, (int)shape.WeightLength);
        using var dDy = dev.Upload<float>(dy);
        using var dW = dev.Upload<float>(wt);
        using var dDx = Numerics.Poisoned(dev, shape.InputLength);
        Conv2d.BackwardDataGather(dev, dDy.View, dW.View, dDx.View, shape);
        Numerics.AssertClose(Conv2d.Reference.BackwardData(Numerics.ToDouble(dy), Numerics.ToDouble(wt), shape), dev.Download<float>(dDx.View),
            atol: Atol(shape), what: $"conv2d backward-data v1 {shape}", seed: seed);
    });

    /// <summary>Random geometries: strides 1-3, kernels 1/3/7, pads 0/1/3, any image from 1x1 up that the kernel fits.</summary>
    [Fact]
    public void Matches_reference_on_random_shapes() => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        int[] kernels = [1, 3, 7], pads = [0, 1, 3];
        for (int done = 0; done < 8;)
        {
            int r = kernels[rng.Next(3)], s = kernels[rng.Next(3)], pad = pads[rng.Next(3)], stride = rng.Next(1, 4);
            var shape = Shape(rng.Next(1, 3), rng.Next(1, 7), rng.Next(1, 12), rng.Next(1, 12), rng.Next(1, 8), r, s, stride, pad);
            if (shape.H + 2 * pad < r || shape.W + 2 * pad < s)
            {
                continue;
            }
            Check(dev, shape, dev.Tuning, $"random shape {done} of seed {seed}");
            done++;
        }
    });

    [Theory]
    [MemberData(nameof(Conv2dTests.Tunings), MemberType = typeof(Conv2dTests))]
    public void Matches_reference_under_other_tunings(int tile, int work, int depth) => WideGroupDevice.Use(dev =>
    {
        var tuning = new KernelTuning(tile, work, depth);
        foreach (var shape in new[] { Shape(1, 3, 11, 11, 6, 7, 7, 2, 3), Shape(2, 6, 9, 8, 9, 1, 1, 2, 0), Shape(2, 5, 9, 8, 7, 3, 3, 2, 1) })
        {
            Check(dev, shape, tuning, $"tuning {tuning}");
        }
    });

    /// <summary>Stride 1 has one phase holding every tap: v2 is v1 there, bit for bit.</summary>
    [Fact]
    public void Stride_one_equals_v1_exactly() => WideGroupDevice.Both(dev =>
    {
        var shape = Shape(2, 5, 7, 6, 6, 3, 3, 1, 1);
        var rng = Numerics.NewRandom(out _);
        using var dDy = dev.Upload<float>(Numerics.Uniform(rng, (int)shape.OutputLength));
        using var dW = dev.Upload<float>(Numerics.Uniform(rng, (int)shape.WeightLength));
        using var v1 = Numerics.Poisoned(dev, shape.InputLength);
        using var v2 = Numerics.Poisoned(dev, shape.InputLength);
        Conv2d.BackwardDataGather(dev, dDy.View, dW.View, v1.View, shape);
        Conv2d.BackwardDataPhased(dev, dDy.View, dW.View, v2.View, shape);
        Assert.Equal(dev.Download<float>(v1.View), dev.Download<float>(v2.View));
    });

    [Fact]
    public void Is_reproducible() => WideGroupDevice.Both(dev =>
    {
        var shape = Shape(2, 6, 9, 9, 7, 3, 3, 2, 1);
        var rng = Numerics.NewRandom(out _);
        using var dDy = dev.Upload<float>(Numerics.Uniform(rng, (int)shape.OutputLength));
        using var dW = dev.Upload<float>(Numerics.Uniform(rng, (int)shape.WeightLength));
        using var first = Numerics.Poisoned(dev, shape.InputLength);
        using var second = Numerics.Poisoned(dev, shape.InputLength);
        Conv2d.BackwardDataPhased(dev, dDy.View, dW.View, first.View, shape);
        Conv2d.BackwardDataPhased(dev, dDy.View, dW.View, second.View, shape);
        Assert.Equal(dev.Download<float>(first.View), dev.Download<float>(second.View));
    });

    [Fact]
    public void Rejects_wrong_lengths_naming_the_operand() => TestDevice.Use(dev =>
    {
        var shape = Shape(1, 2, 6, 6, 3, 3, 3, 2, 1);
        using var x = dev.Allocate<float>(shape.InputLength);
        using var w = dev.Allocate<float>(shape.WeightLength);
        using var y = dev.Allocate<float>(shape.OutputLength);
        using var bad = dev.Allocate<float>(shape.InputLength + 1);
        foreach (var (launch, operand) in new (Action, string)[]
        {
            (() => Conv2d.BackwardDataPhased(dev, bad.View, w.View, x.View, shape), "dy"),
            (() => Conv2d.BackwardDataPhased(dev, y.View, bad.View, x.View, shape), "w"),
            (() => Conv2d.BackwardDataPhased(dev, y.View, w.View, bad.View, shape), "dx"),
        })
        {
            var e = Assert.Throws<ArgumentException>(launch);
            Assert.Equal(operand, e.ParamName);
            Assert.Contains("Conv2d.BackwardData", e.Message);
        }
    });
}
