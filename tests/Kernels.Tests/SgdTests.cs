using Engine.Kernels;
using Engine.Kernels.Cases;
using Engine.Tests;
using ILGPU.Runtime;

namespace Engine.Kernels.Tests;

public class SgdTests
{
    /// <summary>Four steps in a row under other hyperparameters.</summary>
    [Theory]
    [InlineData(0.1, 0.9, 5e-4)]
    [InlineData(0.05, 0.9, 0.0)]
    [InlineData(0.2, 0.5, 1e-2)]
    public void Consecutive_steps_match_reference(double lr, double momentum, double weightDecay) => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        const int length = 37;
        float[] p = Numerics.Uniform(rng, length);
        double[] refP = Numerics.ToDouble(p), refBuf = new double[length];
        using var param = dev.Upload<float>(p);
        using var grad = dev.Allocate<float>(length);
        // Poisoned: the first step must set the buffer from d without reading it.
        using var buf = Numerics.Poisoned(dev, length);
        for (int step = 0; step < 4; step++)
        {
            float[] g = Numerics.Uniform(rng, length);
            grad.View.CopyFromCPU(dev.Stream, g);
            Sgd.Step(dev, param.View, grad.View, buf.View, (float)lr, (float)momentum, (float)weightDecay, firstStep: step == 0);
            Sgd.Reference.Step(refP, Numerics.ToDouble(g), refBuf, (float)lr, (float)momentum, (float)weightDecay, firstStep: step == 0);
            Numerics.AssertClose(refP, dev.Download<float>(param.View), what: $"sgd param after step {step}", seed: seed);
            Numerics.AssertClose(refBuf, dev.Download<float>(buf.View), what: $"sgd momentum buffer after step {step}", seed: seed);
        }
    });

    [Fact]
    public void Momentum_zero_leaves_the_buffer_untouched() => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        const int length = 19;
        float[] p = Numerics.Uniform(rng, length);
        double[] refP = Numerics.ToDouble(p), refBuf = new double[length];
        using var param = dev.Upload<float>(p);
        using var grad = dev.Allocate<float>(length);
        using var buf = Numerics.Poisoned(dev, length);
        for (int step = 0; step < 2; step++)
        {
            float[] g = Numerics.Uniform(rng, length);
            grad.View.CopyFromCPU(dev.Stream, g);
            Sgd.Step(dev, param.View, grad.View, buf.View, 0.1f, 0f, 1e-3f, firstStep: step == 0);
            Sgd.Reference.Step(refP, Numerics.ToDouble(g), refBuf, 0.1f, 0.0, 1e-3f, firstStep: step == 0);
            Numerics.AssertClose(refP, dev.Download<float>(param.View), what: $"sgd (no momentum) param after step {step}", seed: seed);
        }
        Assert.All(dev.Download<float>(buf.View), v => Assert.True(float.IsNaN(v), "momentum 0 wrote the buffer"));
    });

    [Fact]
    public void Reference_follows_torch_rules_on_a_hand_example()
    {
        // p = 1, g = 0.5, wd = 0.1, m = 0.9, lr = 0.1: d = 0.6, buf = 0.6, p = 0.94;
        // then g = 0.5: d = 0.5 + 0.094 = 0.594, buf = 0.54 + 0.594 = 1.134, p = 0.94 - 0.1134 = 0.8266.
        double[] p = { 1.0 }, buf = { double.NaN };
        Sgd.Reference.Step(p, new[] { 0.5 }, buf, 0.1, 0.9, 0.1, firstStep: true);
        Assert.Equal(0.6, buf[0], 12);
        Assert.Equal(0.94, p[0], 12);
        Sgd.Reference.Step(p, new[] { 0.5 }, buf, 0.1, 0.9, 0.1, firstStep: false);
        Assert.Equal(1.134, buf[0], 12);
        Assert.Equal(0.8266, p[0], 12);
    }

    [Fact]
    public void Step_rejects_mismatched_lengths_and_bad_hyperparameters() => TestDevice.Use(dev =>
    {
        using var a = dev.Allocate<float>(8);
        using var b = dev.Allocate<float>(8);
        using var c = dev.Allocate<float>(7);
        var e = Assert.Throws<ArgumentException>(() => Sgd.Step(dev, a.View, b.View, c.View, 0.1f, 0.9f, 0f, true));
        Assert.Contains("Sgd.Step", e.Message);
        e = Assert.Throws<ArgumentException>(() => Sgd.Step(dev, a.View, b.View, b.View, -0.1f, 0.9f, 0f, true));
        Assert.Contains("lr=-0.1", e.Message);
        e = Assert.Throws<ArgumentException>(() => Sgd.Step(dev, a.View, b.View, b.View, 0.1f, float.NaN, 0f, true));
        Assert.Contains("momentum", e.Message);
    });
}
