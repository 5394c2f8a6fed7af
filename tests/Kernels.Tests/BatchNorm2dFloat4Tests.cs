using Engine.Kernels;
using Engine.Tests;
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels.Tests;

/// <summary>
/// Batch norm's float4 normalise and dx passes (plain, ReLU, add + ReLU): the same bits as the scalar
/// passes (<see cref="Float4Dispatch.Suspend"/>) at shapes with hw % 4 == 0, and the scalar passes still run where
/// hw % 4 != 0. The float4 path is also what the reference tests at hw = 64 exercise.
/// </summary>
public class BatchNorm2dFloat4Tests
{
    /// <summary>Runs <paramref name="pass"/> with float4 allowed, then with it suspended, on fresh poisoned outputs; returns both results.</summary>
    private static (float[][] Float4, float[][] Scalar) Twice(Device dev, int[] outputLengths, Action<ArrayView<float>[]> pass)
    {
        float[][] Run()
        {
            var buffers = outputLengths.Select(n => Numerics.Poisoned(dev, n)).ToArray();
            try
            {
                pass(buffers.Select(b => (ArrayView<float>)b.View).ToArray());
                return buffers.Select(b => dev.Download<float>(b.View)).ToArray();
            }
            finally
            {
                foreach (var b in buffers) b.Dispose();
            }
        }
        float[][] vector = Run();
        using (Float4Dispatch.Suspend()) return (vector, Run());
    }

    private static void AssertSameBits((float[][] Float4, float[][] Scalar) r, string what, int seed)
    {
        for (int k = 0; k < r.Float4.Length; k++)
        {
            Assert.True(r.Float4[k].SequenceEqual(r.Scalar[k]), $"{what} output {k}: float4 and scalar passes differ (seed {seed})");
            Assert.DoesNotContain(r.Float4[k], float.IsNaN);
        }
    }

    [Theory]
    [InlineData(3, 5, 8)]
    [InlineData(2, 3, 4)]
    [InlineData(4, 2, 64)]
    [InlineData(2, 3, 6)]   // hw % 4 != 0: both runs take the scalar pass
    public void Float4_passes_give_the_scalar_bits(int n, int c, int hw) => WideGroupDevice.Both(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        int len = n * c * hw;
        float[] xh = Numerics.Uniform(rng, len, 2f, 5f), idh = Numerics.Uniform(rng, len), dyh = Numerics.Uniform(rng, len);
        float[] gh = Numerics.Uniform(rng, c, 0.5f, 1.5f), bh = Numerics.Uniform(rng, c);
        using var x = dev.Upload<float>(xh);
        using var id = dev.Upload<float>(idh);
        using var dy = dev.Upload<float>(dyh);
        using var g = dev.Upload<float>(gh);
        using var b = dev.Upload<float>(bh);
        using var rm = dev.Allocate<float>(c);
        using var rv = dev.Allocate<float>(c);

        foreach (int mode in new[] { 0, 1, 2 })
        {
            string what = $"{(mode == 0 ? "bn" : mode == 1 ? "bn+relu" : "bn+add+relu")} n={n} c={c} hw={hw}";
            // Forward: y, saveMean, saveInvStd.
            var fwd = Twice(dev, [len, c, c], o =>
            {
                Elementwise.Fill(dev, rm.View, 0f);
                Elementwise.Fill(dev, rv.View, 1f);
                if (mode == 0) BatchNorm2d.ForwardTrain(dev, x.View, g.View, b.View, o[0], o[1], o[2], rm.View, rv.View, n, c, hw);
                else if (mode == 1) BatchNorm2d.ForwardTrainRelu(dev, x.View, g.View, b.View, o[0], o[1], o[2], rm.View, rv.View, n, c, hw);
                else BatchNorm2d.ForwardTrainAddRelu(dev, x.View, id.View, g.View, b.View, o[0], o[1], o[2], rm.View, rv.View, n, c, hw);
            });
            AssertSameBits(fwd, $"{what} forward", seed);

            // Backward from that forward's output and statistics: dx, dgamma, dbeta (and dIdentity).
            using var y = dev.Upload<float>(fwd.Float4[0]);
            using var mean = dev.Upload<float>(fwd.Float4[1]);
            using var inv = dev.Upload<float>(fwd.Float4[2]);
            var bwd = Twice(dev, mode == 2 ? [len, c, c, len] : [len, c, c], o =>
            {
                if (mode == 0) BatchNorm2d.Backward(dev, x.View, dy.View, g.View, mean.View, inv.View, o[0], o[1], o[2], n, c, hw);
                else if (mode == 1) BatchNorm2d.BackwardRelu(dev, x.View, y.View, dy.View, g.View, mean.View, inv.View, o[0], o[1], o[2], n, c, hw);
                else BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, g.View, mean.View, inv.View, o[0], o[3], o[1], o[2], n, c, hw);
            });
            AssertSameBits(bwd, $"{what} backward", seed);

            // And against the reference, so two equal wrong passes cannot pass.
            double[] yd = Numerics.ToDouble(fwd.Float4[0]), md = Numerics.ToDouble(fwd.Float4[1]), vd = Numerics.ToDouble(fwd.Float4[2]);
            double[] dyd = Numerics.ToDouble(dyh);
            double[] expectedDx = mode switch
            {
                0 => BatchNorm2d.Reference.Backward(Numerics.ToDouble(xh), dyd, Numerics.ToDouble(gh), md, vd, n, c, hw).Dx,
                1 => BatchNorm2d.Reference.BackwardRelu(Numerics.ToDouble(xh), yd, dyd, Numerics.ToDouble(gh), md, vd, n, c, hw).Dx,
                _ => BatchNorm2d.Reference.BackwardAddRelu(Numerics.ToDouble(xh), yd, dyd, Numerics.ToDouble(gh), md, vd, n, c, hw).Dx,
            };
            Numerics.AssertClose(expectedDx, bwd.Float4[0], what: $"{what} dx", seed: seed);
        }
    });
}
