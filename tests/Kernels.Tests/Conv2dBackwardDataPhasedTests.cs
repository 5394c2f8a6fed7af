using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels.Tests;

/// <summary>Backward-data v2 (one dense GEMM per stride phase, the engine's Conv2d.BackwardData) and v1 against the float64 reference and each other.</summary>
public class Conv2dBackwardDataPhasedTests
{
    private static Conv2dShape Shape(int n, int c, int h, int w, int k, int r, int s, int stride, int pad)
        => new(n, c, h, w, k, r, s, stride, pad);

    /// <summary>
    /// The conv case's shapes (<see cref="ConvCase.Shapes"/>): ResNet's kernels at strides 1 and 2 plus stride 3 (nine
    /// phases with 3, 2 or 1 taps of a 7x7), sizes that are not multiples of the tiles, odd and even images (phases
    /// of unequal size), a 1x1/2 (three phases without taps, written as zeros), a 3x3/2 without padding, and
    /// images too small to hold every phase.
    /// </summary>
    public static TheoryData<int> Shapes() => new(Enumerable.Range(0, ConvCase.Shapes.Count));

    private static ConvLauncher Phased(KernelTuning tuning)
        => (Device d, ILGPU.ArrayView<float> dy, ILGPU.ArrayView<float> w, ILGPU.ArrayView<float> dx, in Conv2dShape s) => Conv2d.BackwardDataPhased(d, dy, w, dx, s, tuning);

    private static void Check(Device dev, Conv2dShape shape, KernelTuning tuning, string label)
        => CaseAsserts.Passes(r => new ConvCase(dev, r, shape, ConvPass.BackwardData), Phased(tuning), $"backward-data v2, {label}");

    /// <summary>v1 (the gather GEMM over every tap) stays callable for the kernel bench, so it stays tested.</summary>
    [Theory]
    [MemberData(nameof(Shapes))]
    public void Gather_v1_matches_reference_on_both_devices(int shape) => WideGroupDevice.Both(dev =>
        CaseAsserts.Passes(r => new ConvCase(dev, r, ConvCase.Shapes[shape], ConvPass.BackwardData), Conv2d.BackwardDataGather, "backward-data v1"));

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

    /// <summary>
    /// Each slab of the reduction is one tap and Depth channels, so a tap's K channels fill several slabs
    /// and the last one is padded when K is not a multiple of Depth: K 32 (two full slabs of 16), 37 (16, 16, 5) and
    /// 20 under Depth 4 and 8, at strides 1 and 2, on the device's own tuning and the CUDA-shaped 4/4/16. (At stride 1
    /// the launcher takes v1 when K is not a multiple of Depth, so the padded last slab is exercised at stride 2.)
    /// </summary>
    [Theory]
    [InlineData(0, 0, 0)]
    [InlineData(4, 4, 16)]
    [InlineData(4, 4, 4)]
    [InlineData(2, 4, 8)]
    public void Matches_reference_with_several_slabs_per_tap(int tile, int work, int depth)
    {
        void Run(Device dev)
        {
            var tuning = tile == 0 ? dev.Tuning : new KernelTuning(tile, work, depth);
            foreach (var shape in new[] { Shape(1, 5, 6, 5, 32, 3, 3, 1, 1), Shape(2, 3, 5, 6, 37, 3, 3, 2, 1), Shape(1, 9, 4, 5, 20, 1, 1, 1, 0) })
            {
                Check(dev, shape, tuning, $"tuning {tuning}, {shape}");
            }
        }
        if (tile == 0) WideGroupDevice.Both(Run);
        else WideGroupDevice.Use(Run);
    }

    /// <summary>The tap-major weight copy the phases read: every element moved exactly (outputs poisoned first), shapes off any tile.</summary>
    [Fact]
    public void Weight_taps_first_matches_reference() => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        foreach (var shape in new[] { Shape(1, 3, 5, 5, 7, 3, 3, 1, 1), Shape(1, 5, 6, 6, 2, 1, 1, 2, 0), Shape(1, 2, 9, 9, 3, 7, 7, 2, 3) })
        {
            float[] w = Numerics.Uniform(rng, (int)shape.WeightLength);
            using var dW = dev.Upload<float>(w);
            // The copy goes to the device's workspace, which earlier ops left holding other values: poison it first.
            Workspace.For(dev).Get(dev, shape.WeightLength).CopyFromCPU(dev.Stream, Enumerable.Repeat(float.NaN, (int)shape.WeightLength).ToArray());
            ILGPU.ArrayView<float> wt = Conv2d.WeightTapsFirst(dev, dW.View, shape);
            double[] expected = Conv2d.Reference.WeightTapsFirst(Numerics.ToDouble(w), shape);
            Assert.Equal(expected.Select(v => (float)v).ToArray(), dev.Download<float>(wt));
        }
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
