using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class Conv2dTests
{
    private static Conv2dShape Shape(int n, int c, int h, int w, int k, int r, int s, int stride, int pad)
        => new(n, c, h, w, k, r, s, stride, pad);

    /// <summary>A backward-weight launcher with an explicit split count over the GEMM's depth (N·OH·OW).</summary>
    internal static ConvLauncher BackwardWeightSplit(int splits, KernelTuning? tuning = null)
        => (Device d, ILGPU.ArrayView<float> x, ILGPU.ArrayView<float> dy, ILGPU.ArrayView<float> dw, in Conv2dShape s)
            => Conv2d.BackwardWeight(d, x, dy, dw, s, splits, tuning ?? d.Tuning);

    /// <summary>1: the single-pass path that writes dw directly; 3: an explicit split count (0, the launcher's own choice, is <see cref="Matches_reference"/>).</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void BackwardWeight_matches_reference_with_explicit_splits(int splits) => TestDevice.Use(dev =>
    {
        foreach (Conv2dShape s in ConvCase.Shapes)
        {
            CaseAsserts.Passes(r => new ConvCase(dev, r, s, ConvPass.BackwardWeight), BackwardWeightSplit(splits), $"splits {splits}");
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

    /// <summary>The passes' launchers under an explicit tuning.</summary>
    internal static ConvLauncher Tuned(ConvPass pass, KernelTuning tuning) => pass switch
    {
        ConvPass.Forward => (Device d, ILGPU.ArrayView<float> a, ILGPU.ArrayView<float> b, ILGPU.ArrayView<float> o, in Conv2dShape s) => Conv2d.Forward(d, a, b, o, s, tuning),
        ConvPass.BackwardData => (Device d, ILGPU.ArrayView<float> a, ILGPU.ArrayView<float> b, ILGPU.ArrayView<float> o, in Conv2dShape s) => Conv2d.BackwardData(d, a, b, o, s, tuning),
        _ => BackwardWeightSplit(1, tuning),
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
                foreach (ConvPass pass in ConvCase.Passes)
                {
                    CaseAsserts.Passes(r => new ConvCase(dev, r, shape, pass), Tuned(pass, tuning), $"tuning {tuning}");
                }
                CaseAsserts.Passes(r => new ConvCase(dev, r, shape, ConvPass.BackwardWeight), BackwardWeightSplit(3, tuning), $"tuning {tuning} splits 3");
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
