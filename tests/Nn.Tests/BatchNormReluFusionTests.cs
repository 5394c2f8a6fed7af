using Engine.Kernels;
using Engine.Nn.Layers;
using Engine.Tests;

namespace Engine.Nn.Tests;

/// <summary>A BatchNorm2dLayer with FuseRelu equals the same layer followed by a ReluLayer, in every BN mode.</summary>
public class BatchNormReluFusionTests
{
    [Theory]
    [MemberData(nameof(BnLayerFixture.Cases), MemberType = typeof(BnLayerFixture))]
    public void Fused_layer_equals_bn_then_relu(BnMode mode, int n, int c, int hw) => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var (gamma, beta, rm, rv) = BnLayerFixture.RandomParameters(rng, c);
        beta[0] = 0f; // channel 0's output then has the sign of x (eval, frozen) or of x - mean (train)
        rm[0] = 0f;
        using var fused = new BnLayerFixture(dev, c, fuseRelu: true, frozen: mode == BnMode.Frozen, gamma, beta, rm, rv);
        using var plain = new BnLayerFixture(dev, c, fuseRelu: false, frozen: mode == BnMode.Frozen, gamma, beta, rm, rv);
        var relu = new ReluLayer(dev, "relu");

        float[] x = Numerics.Uniform(rng, n * c * hw), g = Numerics.Uniform(rng, n * c * hw);
        x[0] = -0.9f;     // image 0, channel 0
        x[c * hw] = 0.9f; // image 1, channel 0: so the ReLU clips some outputs and passes others in every mode
        int[] shape = [n, c, hw, 1];
        bool training = mode != BnMode.Eval;
        using var dX = dev.Upload<float>(x);
        Tensor yFused = fused.Layer.Forward(new Tensor(dX.View, shape), training);
        Tensor yPlain = relu.Forward(plain.Layer.Forward(new Tensor(dX.View, shape), training), training);
        float[] yf = dev.Download(yFused.View), yp = dev.Download(yPlain.View);
        Assert.True(yp.SequenceEqual(yf), $"forward differs (seed {seed})");
        Assert.Contains(yf, v => v == 0f);
        Assert.Contains(yf, v => v > 0f);
        Assert.Equal(plain.Store.DownloadBuffers(dev), fused.Store.DownloadBuffers(dev));
        if (!training) return;

        using var dGf = dev.Upload<float>(g);
        using var dGp = dev.Upload<float>(g);
        Tensor dxFused = fused.Layer.Backward(new Tensor(dGf.View, shape));
        Tensor dxPlain = plain.Layer.Backward(relu.Backward(new Tensor(dGp.View, shape)));
        Numerics.AssertClose(Numerics.ToDouble(dev.Download(dxPlain.View)), dev.Download(dxFused.View), what: $"{mode} dx", seed: seed);
        Numerics.AssertClose(Numerics.ToDouble(plain.Store.DownloadGrads(dev)), fused.Store.DownloadGrads(dev), what: $"{mode} dgamma, dbeta", seed: seed);
    });
}
