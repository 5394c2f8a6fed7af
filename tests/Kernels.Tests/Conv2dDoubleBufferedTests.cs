using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;

namespace Engine.Kernels.Tests;

/// <summary>
/// The double-buffered conv GEMMs (two shared buffers per operand, the next slab staged while this one is multiplied,
/// one barrier per slab) against the float64 reference: every pass, the conv case's shapes (odd and even slab counts,
/// phases without taps, sizes that are not multiples of the tiles), backward-data with several slabs per tap, split
/// backward-weight, the CPU's tuning, 16-thread groups and the other tunings.
/// </summary>
public class Conv2dDoubleBufferedTests
{
    private static ConvLauncher Launcher(ConvPass pass, KernelTuning? tuning, int splits = 0) => pass switch
    {
        ConvPass.Forward => (Device d, ILGPU.ArrayView<float> a, ILGPU.ArrayView<float> b, ILGPU.ArrayView<float> o, in Conv2dShape s)
            => Conv2d.Forward(d, a, b, o, s, tuning ?? d.Tuning, Conv2d.Buffering.Double),
        ConvPass.BackwardData => (Device d, ILGPU.ArrayView<float> a, ILGPU.ArrayView<float> b, ILGPU.ArrayView<float> o, in Conv2dShape s)
            => Conv2d.BackwardDataPhased(d, a, b, o, s, tuning ?? d.Tuning, Conv2d.Buffering.Double),
        _ => (Device d, ILGPU.ArrayView<float> a, ILGPU.ArrayView<float> b, ILGPU.ArrayView<float> o, in Conv2dShape s)
            => Conv2d.BackwardWeight(d, a, b, o, s, splits, tuning ?? d.Tuning, Conv2d.Buffering.Double),
    };

    public static TheoryData<int> Shapes() => new(Enumerable.Range(0, ConvCase.Shapes.Count));

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Every_pass_matches_reference_on_both_devices(int shape) => WideGroupDevice.Both(dev =>
    {
        foreach (ConvPass pass in ConvCase.Passes)
        {
            CaseAsserts.Passes(r => new ConvCase(dev, r, ConvCase.Shapes[shape], pass), Launcher(pass, null), $"{pass}, double-buffered");
        }
    });

    [Theory]
    [MemberData(nameof(Conv2dTests.Tunings), MemberType = typeof(Conv2dTests))]
    public void Every_pass_matches_reference_under_other_tunings(int tile, int work, int depth) => WideGroupDevice.Use(dev =>
    {
        var tuning = new KernelTuning(tile, work, depth);
        // 27, 294 and 6 reduction steps for the forward; K 37 gives backward-data three slabs per tap under Depth 16.
        foreach (var shape in new Conv2dShape[] { new(2, 3, 7, 7, 5, 3, 3, 1, 1), new(1, 6, 11, 11, 6, 7, 7, 2, 3), new(2, 6, 9, 8, 9, 1, 1, 2, 0), new(2, 3, 5, 6, 37, 3, 3, 2, 1) })
        {
            foreach (ConvPass pass in ConvCase.Passes)
            {
                CaseAsserts.Passes(r => new ConvCase(dev, r, shape, pass), Launcher(pass, tuning), $"{pass}, double-buffered, tuning {tuning}");
            }
            CaseAsserts.Passes(r => new ConvCase(dev, r, shape, ConvPass.BackwardWeight), Launcher(ConvPass.BackwardWeight, tuning, splits: 3),
                $"backward-weight, double-buffered, tuning {tuning}, splits 3");
        }
    });

    /// <summary>Same inputs, same bits: the double-buffered loop multiplies the same slabs in the same order as the single-buffered one.</summary>
    [Fact]
    public void Equals_the_single_buffered_kernels_bit_for_bit() => WideGroupDevice.Both(dev =>
    {
        var shape = new Conv2dShape(2, 5, 7, 6, 20, 3, 3, 2, 1);
        var rng = Numerics.NewRandom(out _);
        using var x = dev.Upload<float>(Numerics.Uniform(rng, (int)shape.InputLength));
        using var w = dev.Upload<float>(Numerics.Uniform(rng, (int)shape.WeightLength));
        using var dy = dev.Upload<float>(Numerics.Uniform(rng, (int)shape.OutputLength));
        foreach (ConvPass pass in ConvCase.Passes)
        {
            var (a, b, length) = pass switch
            {
                ConvPass.Forward => (x, w, shape.OutputLength),
                ConvPass.BackwardData => (dy, w, shape.InputLength),
                _ => (x, dy, shape.WeightLength),
            };
            using var single = Numerics.Poisoned(dev, length);
            using var two = Numerics.Poisoned(dev, length);
            Conv2dTests.Tuned(pass, dev.Tuning)(dev, a.View, b.View, single.View, shape);
            Launcher(pass, dev.Tuning, splits: 1)(dev, a.View, b.View, two.View, shape);
            Assert.True(dev.Download<float>(single.View).SequenceEqual(dev.Download<float>(two.View)), $"{pass}: double-buffered differs from single-buffered");
        }
    });
}
