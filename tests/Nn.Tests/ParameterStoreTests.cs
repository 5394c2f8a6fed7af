using Engine.Tests;

namespace Engine.Nn.Tests;

public class ParameterStoreTests
{
    [Fact]
    public void Backward_makes_every_gradient_ready_once_in_flat_buffer_order() => TestDevice.Use(dev =>
    {
        using var model = new ResNet(dev, new ResNetConfig(18, "imagenet", 2));
        model.Initialize(seed: 3);
        var ready = new List<Parameter>();
        model.GradientReady += ready.Add;
        var rng = Numerics.NewRandom(out _);
        using var x = dev.Upload<float>(Numerics.Uniform(rng, 2 * 3 * 32 * 32));
        using var labels = dev.Upload<int>(new[] { 1, 7 });
        using var loss = new CrossEntropyLoss(dev);
        loss.Forward(model.Forward(new Tensor(x.View, new[] { 2, 3, 32, 32 }), training: true), labels.View);
        model.Backward(loss.Backward());
        dev.Synchronize();

        Assert.Equal(model.Store.Parameters.Count(), ready.Count);
        Assert.Equal(ready.Count, ready.Distinct().Count());
        long next = 0;
        foreach (Parameter p in ready)
        {
            Assert.True(p.Offset == next, $"{p.Name} became ready at offset {p.Offset}, expected {next}: gradients must fill the flat buffer front to back");
            next += p.Length;
        }
        Assert.Equal(model.Store.ParameterCount, next);
        Assert.Equal("fc.bias", ready[0].Name);
        Assert.Equal("conv1.weight", ready[^1].Name);
    });

    [Fact]
    public void Initialisation_follows_torchvision() => TestDevice.Use(dev =>
    {
        using var model = new ResNet(dev, new ResNetConfig(18, "imagenet", 16));
        model.Initialize(seed: 11);
        float[] values = model.Store.DownloadValues(dev), buffers = model.Store.DownloadBuffers(dev);
        float[] Slice(string name, float[] from) { Parameter p = model.Store[name]; return from.AsSpan((int)p.Offset, (int)p.Length).ToArray(); }

        // kaiming_normal_(mode='fan_out', nonlinearity='relu'): std = sqrt(2 / (out * k * k)).
        float[] w = Slice("layer4.1.conv2.weight", values); // 128x128x3x3 = 147,456 draws
        double mean = w.Average(v => (double)v), std = Math.Sqrt(w.Average(v => (double)v * v) - mean * mean);
        double expectedStd = Math.Sqrt(2.0 / (128 * 9));
        Assert.InRange(std, expectedStd * 0.98, expectedStd * 1.02);
        Assert.InRange(mean, -0.01 * expectedStd * 10, 0.01 * expectedStd * 10);

        Assert.All(Slice("layer1.0.bn1.weight", values), v => Assert.Equal(1f, v));
        Assert.All(Slice("layer1.0.bn1.bias", values), v => Assert.Equal(0f, v));
        Assert.All(Slice("bn1.running_var", buffers), v => Assert.Equal(1f, v));
        Assert.All(Slice("bn1.running_mean", buffers), v => Assert.Equal(0f, v));

        // nn.Linear default: uniform in +-1/sqrt(in_features).
        double bound = 1 / Math.Sqrt(128);
        float[] fc = Slice("fc.weight", values);
        Assert.All(fc, v => Assert.InRange(v, -bound, bound));
        Assert.True(fc.Max() > 0.9 * bound && fc.Min() < -0.9 * bound, "fc weights do not span the uniform range");
    });
}
