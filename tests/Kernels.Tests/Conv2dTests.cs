using Engine.Kernels;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class Conv2dTests
{
    /// <summary>
    /// Small shapes covering ResNet's kernels (1x1/1, 1x1/2, 3x3/1, 3x3/2, 7x7/2 pad 3), non-square
    /// images, and sizes that are not multiples of the tiles (4x4 blocks, 4- to 32-deep slices) on any GEMM edge.
    /// Columns: N, C, H, W, K, R, S, stride, pad.
    /// </summary>
    public static TheoryData<int, int, int, int, int, int, int, int, int> Shapes => new()
    {
        { 2, 3, 7, 7, 5, 3, 3, 1, 1 },
        { 2, 3, 7, 7, 5, 1, 1, 1, 0 },
        { 1, 6, 9, 9, 5, 1, 1, 2, 0 },
        { 2, 3, 9, 8, 6, 3, 3, 2, 1 },
        { 1, 3, 11, 11, 5, 7, 7, 2, 3 },
        { 3, 5, 5, 6, 7, 3, 3, 1, 1 },
        { 1, 1, 1, 1, 1, 1, 1, 1, 0 },
    };

    private static Conv2dShape Shape(int n, int c, int h, int w, int k, int r, int s, int stride, int pad)
        => new(n, c, h, w, k, r, s, stride, pad);

    /// <summary>
    /// Each output is a float32 sum of <paramref name="terms"/> products of O(1) values; where it cancels
    /// to near zero only an absolute bound holds, and the rounding it must absorb grows with the term count.
    /// </summary>
    private static double Atol(long terms) => Math.Max(1e-5, 1e-7 * terms);

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Forward_matches_reference(int n, int c, int h, int w, int k, int r, int s, int stride, int pad) => TestDevice.Use(dev =>
    {
        var shape = Shape(n, c, h, w, k, r, s, stride, pad);
        var rng = Numerics.NewRandom(out int seed);
        float[] x = Numerics.Uniform(rng, (int)shape.InputLength), wt = Numerics.Uniform(rng, (int)shape.WeightLength);
        using var dX = dev.Upload<float>(x);
        using var dW = dev.Upload<float>(wt);
        using var dY = Numerics.Poisoned(dev, shape.OutputLength);
        Conv2d.Forward(dev, dX.View, dW.View, dY.View, shape);
        Numerics.AssertClose(Conv2d.Reference.Forward(Numerics.ToDouble(x), Numerics.ToDouble(wt), shape), dev.Download<float>(dY.View),
            atol: Atol((long)c * r * s), what: $"conv2d forward {shape}", seed: seed);
    });

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BackwardData_matches_reference(int n, int c, int h, int w, int k, int r, int s, int stride, int pad) => TestDevice.Use(dev =>
    {
        var shape = Shape(n, c, h, w, k, r, s, stride, pad);
        var rng = Numerics.NewRandom(out int seed);
        float[] dy = Numerics.Uniform(rng, (int)shape.OutputLength), wt = Numerics.Uniform(rng, (int)shape.WeightLength);
        using var dDy = dev.Upload<float>(dy);
        using var dW = dev.Upload<float>(wt);
        using var dDx = Numerics.Poisoned(dev, shape.InputLength);
        Conv2d.BackwardData(dev, dDy.View, dW.View, dDx.View, shape);
        Numerics.AssertClose(Conv2d.Reference.BackwardData(Numerics.ToDouble(dy), Numerics.ToDouble(wt), shape), dev.Download<float>(dDx.View),
            atol: Atol((long)k * r * s), what: $"conv2d backward-data {shape}", seed: seed);
    });

    [Theory]
    [MemberData(nameof(Shapes))]
    public void BackwardWeight_matches_reference(int n, int c, int h, int w, int k, int r, int s, int stride, int pad) => TestDevice.Use(dev =>
    {
        var shape = Shape(n, c, h, w, k, r, s, stride, pad);
        var rng = Numerics.NewRandom(out int seed);
        float[] x = Numerics.Uniform(rng, (int)shape.InputLength), dy = Numerics.Uniform(rng, (int)shape.OutputLength);
        double[] expected = Conv2d.Reference.BackwardWeight(Numerics.ToDouble(x), Numerics.ToDouble(dy), shape);
        using var dX = dev.Upload<float>(x);
        using var dDy = dev.Upload<float>(dy);
        double atol = Atol((long)n * shape.OutH * shape.OutW);

        // 0: the launcher's own choice (on the CPU emulator usually one split, for groups are cheap there);
        // 1: the single-pass path that writes dw directly; 3: an explicit split count.
        foreach (int splits in new[] { 0, 1, 3 })
        {
            using var dDw = Numerics.Poisoned(dev, shape.WeightLength);
            Conv2d.BackwardWeight(dev, dX.View, dDy.View, dDw.View, shape, splits);
            Numerics.AssertClose(expected, dev.Download<float>(dDw.View), atol: atol, what: $"conv2d backward-weight {shape} splits {splits}", seed: seed);
        }
    });

    [Fact]
    public void BackwardWeight_is_reproducible_with_split_reduction() => TestDevice.Use(dev =>
    {
        var shape = Shape(2, 3, 9, 9, 5, 3, 3, 1, 1);
        var rng = Numerics.NewRandom(out _);
        using var dX = dev.Upload<float>(Numerics.Uniform(rng, (int)shape.InputLength));
        using var dDy = dev.Upload<float>(Numerics.Uniform(rng, (int)shape.OutputLength));
        using var first = Numerics.Poisoned(dev, shape.WeightLength);
        using var second = Numerics.Poisoned(dev, shape.WeightLength);
        Conv2d.BackwardWeight(dev, dX.View, dDy.View, first.View, shape, splits: 5);
        Conv2d.BackwardWeight(dev, dX.View, dDy.View, second.View, shape, splits: 5);
        Assert.Equal(dev.Download<float>(first.View), dev.Download<float>(second.View));
    });

    /// <summary>
    /// Tunings other than the CPU's, each run on the CPU device with 16-thread groups (or on the CUDA test device): thread mappings where
    /// a group is at least as wide as the staged operand's fast dimension (CUDA's case: Tile 4 / Depth 4,
    /// Tile 2 / Work 1 / Depth 4), narrower (Tile 2 / Work 4), and mixed. Columns: Tile, Work, Depth.
    /// </summary>
    public static TheoryData<int, int, int> Tunings => new()
    {
        { 4, 4, 16 }, // the CUDA path: float4 fragments, sixteen steps written out
        { 4, 4, 4 },
        { 4, 1, 16 },
        { 2, 1, 4 },
        { 2, 2, 4 },
        { 2, 4, 8 },
        { 4, 2, 8 },
        { 1, 3, 12 },
    };

    [Theory]
    [MemberData(nameof(Tunings))]
    public void Every_pass_matches_reference_under_other_tunings(int tile, int work, int depth)
    {
        var tuning = new KernelTuning(tile, work, depth);
        WideGroupDevice.Use(dev =>
        {
            foreach (var shape in new[] { Shape(2, 3, 7, 7, 5, 3, 3, 1, 1), Shape(1, 3, 11, 11, 6, 7, 7, 2, 3), Shape(2, 6, 9, 8, 9, 1, 1, 2, 0) })
            {
                var rng = Numerics.NewRandom(out int seed);
                float[] x = Numerics.Uniform(rng, (int)shape.InputLength), wt = Numerics.Uniform(rng, (int)shape.WeightLength);
                float[] g = Numerics.Uniform(rng, (int)shape.OutputLength);
                double[] xd = Numerics.ToDouble(x), wd = Numerics.ToDouble(wt), gd = Numerics.ToDouble(g);
                using var dX = dev.Upload<float>(x);
                using var dW = dev.Upload<float>(wt);
                using var dG = dev.Upload<float>(g);
                string what = $"{shape} tuning {tuning}";

                using var dY = Numerics.Poisoned(dev, shape.OutputLength);
                Conv2d.Forward(dev, dX.View, dW.View, dY.View, shape, tuning);
                Numerics.AssertClose(Conv2d.Reference.Forward(xd, wd, shape), dev.Download<float>(dY.View),
                    atol: Atol((long)shape.C * shape.R * shape.S), what: $"conv2d forward {what}", seed: seed);

                using var dDx = Numerics.Poisoned(dev, shape.InputLength);
                Conv2d.BackwardData(dev, dG.View, dW.View, dDx.View, shape, tuning);
                Numerics.AssertClose(Conv2d.Reference.BackwardData(gd, wd, shape), dev.Download<float>(dDx.View),
                    atol: Atol((long)shape.K * shape.R * shape.S), what: $"conv2d backward-data {what}", seed: seed);

                foreach (int splits in new[] { 1, 3 })
                {
                    using var dDw = Numerics.Poisoned(dev, shape.WeightLength);
                    Conv2d.BackwardWeight(dev, dX.View, dG.View, dDw.View, shape, splits, tuning);
                    Numerics.AssertClose(Conv2d.Reference.BackwardWeight(xd, gd, shape), dev.Download<float>(dDw.View),
                        atol: Atol((long)shape.N * shape.OutH * shape.OutW), what: $"conv2d backward-weight {what} splits {splits}", seed: seed);
                }
            }
        });
    }

    [CpuFact("Tile 8 and 16 are rejected by the 16-thread groups of the CPU device; a GPU runs them")]
    public void Unsupported_tunings_are_rejected() => WideGroupDevice.Use(dev =>
    {
        var shape = Shape(1, 2, 5, 5, 3, 3, 3, 1, 1);
        using var x = dev.Allocate<float>(shape.InputLength);
        using var w = dev.Allocate<float>(shape.WeightLength);
        using var y = dev.Allocate<float>(shape.OutputLength);
        foreach (var t in new[] { new KernelTuning(4, 4, 6), new KernelTuning(4, 5, 4), new KernelTuning(8, 4, 4), new KernelTuning(16, 4, 32) })
        {
            Assert.Throws<InvalidOperationException>(() => Conv2d.Forward(dev, x.View, w.View, y.View, shape, t));
        }
    });

    /// <summary>f(x, w) = Σ g · conv(x, w); its gradients are BackwardData(g, w) and BackwardWeight(x, g).</summary>
    [Theory]
    [InlineData(2, 3, 5, 5, 4, 3, 3, 1, 1)]
    [InlineData(1, 2, 7, 6, 3, 3, 3, 2, 1)]
    [InlineData(1, 2, 8, 8, 3, 1, 1, 2, 0)]
    [InlineData(1, 2, 9, 9, 2, 7, 7, 2, 3)]
    public void Backward_references_match_finite_differences(int n, int c, int h, int w, int k, int r, int s, int stride, int pad)
    {
        var shape = Shape(n, c, h, w, k, r, s, stride, pad);
        var rng = Numerics.NewRandom(out int seed);
        double[] x = Numerics.ToDouble(Numerics.Uniform(rng, (int)shape.InputLength));
        double[] wt = Numerics.ToDouble(Numerics.Uniform(rng, (int)shape.WeightLength));
        double[] g = Numerics.ToDouble(Numerics.Uniform(rng, (int)shape.OutputLength));

        Numerics.AssertFiniteDifference(xv => Numerics.Dot(g, Conv2d.Reference.Forward(xv, wt, shape)), x,
            Conv2d.Reference.BackwardData(g, wt, shape), rng, what: $"dx {shape} seed {seed}");
        Numerics.AssertFiniteDifference(wv => Numerics.Dot(g, Conv2d.Reference.Forward(x, wv, shape)), wt,
            Conv2d.Reference.BackwardWeight(x, g, shape), rng, what: $"dw {shape} seed {seed}");
    }

    [Fact]
    public void Launchers_reject_wrong_lengths_naming_the_operand() => TestDevice.Use(dev =>
    {
        var shape = Shape(1, 2, 5, 5, 3, 3, 3, 1, 1);
        using var x = dev.Allocate<float>(shape.InputLength);
        using var w = dev.Allocate<float>(shape.WeightLength);
        using var y = dev.Allocate<float>(shape.OutputLength);
        using var bad = dev.Allocate<float>(shape.InputLength + 1);

        void Rejects(Action launch, string operand, string op)
        {
            var e = Assert.Throws<ArgumentException>(launch);
            Assert.Equal(operand, e.ParamName);
            Assert.Contains($"'{operand}'", e.Message);
            Assert.Contains(op, e.Message);
        }

        Rejects(() => Conv2d.Forward(dev, bad.View, w.View, y.View, shape), "x", "Conv2d.Forward");
        Rejects(() => Conv2d.Forward(dev, x.View, bad.View, y.View, shape), "w", "Conv2d.Forward");
        Rejects(() => Conv2d.Forward(dev, x.View, w.View, bad.View, shape), "y", "Conv2d.Forward");
        Rejects(() => Conv2d.BackwardData(dev, bad.View, w.View, x.View, shape), "dy", "Conv2d.BackwardData");
        Rejects(() => Conv2d.BackwardData(dev, y.View, w.View, bad.View, shape), "dx", "Conv2d.BackwardData");
        Rejects(() => Conv2d.BackwardWeight(dev, x.View, y.View, bad.View, shape), "dw", "Conv2d.BackwardWeight");
        Rejects(() => Conv2d.BackwardWeight(dev, x.View, bad.View, w.View, shape), "dy", "Conv2d.BackwardWeight");
    });

    [Theory]
    [InlineData(0, 1, 4, 4, 1, 1, 1, 1, 0, "positive")]
    [InlineData(1, 1, 4, 4, 1, 3, 3, 0, 1, "stride")]
    [InlineData(1, 1, 4, 4, 1, 3, 3, 1, -1, "padding")]
    [InlineData(1, 1, 2, 2, 1, 7, 7, 2, 1, "does not fit")]
    public void Shape_validation_rejects_bad_geometry(int n, int c, int h, int w, int k, int r, int s, int stride, int pad, string reason)
    {
        var e = Assert.Throws<ArgumentException>(() => Shape(n, c, h, w, k, r, s, stride, pad).Validate());
        Assert.Contains(reason, e.Message);
    }

    [Fact]
    public void Shape_reports_resnet_geometry()
    {
        // torchvision's stem on a 32x32 image and a stride-2 3x3 of layer2.
        var stem = Shape(512, 3, 32, 32, 64, 7, 7, 2, 3);
        Assert.Equal((16, 16), (stem.OutH, stem.OutW));
        Assert.Equal(2L * 512 * 64 * 16 * 16 * 3 * 7 * 7, stem.Flops);
        var down = Shape(2, 64, 32, 32, 128, 3, 3, 2, 1);
        Assert.Equal((16, 16), (down.OutH, down.OutW));
        Assert.Equal(2L * 128 * 16 * 16, down.OutputLength);
        Assert.Equal(128L * 64 * 9, down.WeightLength);
    }

    [Fact]
    public void Divisor_matches_integer_division()
    {
        var rng = Numerics.NewRandom(out int seed);
        int[] divisors = [1, 2, 3, 7, 9, 49, 64, 147, 1000, 4608, 65535, 1 << 20, int.MaxValue / 3, int.MaxValue];
        int[] edges = [0, 1, 2, 63, 64, 65, 4607, 4608, 4609, int.MaxValue - 1, int.MaxValue];
        foreach (int d in divisors.Concat(Enumerable.Range(0, 50).Select(_ => rng.Next(1, int.MaxValue))))
        {
            var div = new FastDivisor(d);
            foreach (int n in edges.Concat(Enumerable.Range(0, 200).Select(_ => rng.Next())).Concat([d - 1, d, d + 1 < 0 ? d : d + 1]))
            {
                Assert.True(div.Divide(n) == n / d, $"{n} / {d}: got {div.Divide(n)}, expected {n / d} (seed {seed})");
            }
        }
    }
}
