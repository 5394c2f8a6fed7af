using Engine.Kernels;
using Engine.Nn.Layers;
using Engine.Tests;

namespace Engine.Nn.Tests;

/// <summary>
/// BatchNorm2dLayer.ForwardAddRelu / BackwardAddRelu equal the same layer's Forward, a residual add and
/// a ReluLayer, in every BN mode, and hand d(identity) on before reporting their own gradients.
/// </summary>
public class BatchNormAddReluFusionTests
{
    [Theory]
    [MemberData(nameof(BnLayerFixture.Cases), MemberType = typeof(BnLayerFixture))]
    public void Fused_layer_equals_bn_add_relu(BnMode mode, int n, int c, int hw) => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var (gamma, beta, rm, rv) = BnLayerFixture.RandomParameters(rng, c);
        using var fused = new BnLayerFixture(dev, c, fuseRelu: false, frozen: mode == BnMode.Frozen, gamma, beta, rm, rv);
        using var plain = new BnLayerFixture(dev, c, fuseRelu: false, frozen: mode == BnMode.Frozen, gamma, beta, rm, rv);
        var relu = new ReluLayer(dev, "relu");

        int len = n * c * hw;
        float[] x = Numerics.Uniform(rng, len), id = Numerics.Uniform(rng, len), g = Numerics.Uniform(rng, len);
        id[0] = -10f;      // clipped in every mode
        id[len - 1] = 10f; // passed in every mode
        int[] shape = [n, c, hw, 1];
        bool training = mode != BnMode.Eval;
        using var dX = dev.Upload<float>(x);
        using var dId = dev.Upload<float>(id);
        using var sum = dev.Allocate<float>(len);
        Tensor yFused = fused.Layer.ForwardAddRelu(new Tensor(dX.View, shape), new Tensor(dId.View, shape), training);
        Tensor bnPlain = plain.Layer.Forward(new Tensor(dX.View, shape), training);
        Elementwise.Add(dev, bnPlain.View, dId.View, sum.View);
        Tensor yPlain = relu.Forward(new Tensor(sum.View, shape), training);
        float[] yf = dev.Download(yFused.View), yp = dev.Download(yPlain.View);
        Assert.True(yp.SequenceEqual(yf), $"forward differs (seed {seed})");
        Assert.Contains(yf, v => v == 0f);
        Assert.Contains(yf, v => v > 0f);
        Assert.Equal(plain.Store.DownloadBuffers(dev), fused.Store.DownloadBuffers(dev));
        if (!training) return;

        using var dGf = dev.Upload<float>(g);
        using var dGp = dev.Upload<float>(g);
        var events = new List<string>();
        fused.Layer.GradientReady += p => events.Add(p == fused.Layer.Weight ? "weight" : p == fused.Layer.Bias ? "bias" : "?");
        float[]? dIdentity = null;
        Tensor dxFused = fused.Layer.BackwardAddRelu(new Tensor(dGf.View, shape), d =>
        {
            events.Add("identity");
            dIdentity = dev.Download(d.View);
        });
        Tensor dPlain = relu.Backward(new Tensor(dGp.View, shape));
        float[] dIdentityPlain = dev.Download(dPlain.View);
        Tensor dxPlain = plain.Layer.Backward(dPlain);
        Assert.Equal(["identity", "bias", "weight"], events);
        Assert.NotNull(dIdentity);
        Assert.True(dIdentityPlain.SequenceEqual(dIdentity), $"{mode} d(identity) differs (seed {seed})");
        Numerics.AssertClose(Numerics.ToDouble(dev.Download(dxPlain.View)), dev.Download(dxFused.View), what: $"{mode} dx", seed: seed);
        Numerics.AssertClose(Numerics.ToDouble(plain.Store.DownloadGrads(dev)), fused.Store.DownloadGrads(dev), what: $"{mode} dgamma, dbeta", seed: seed);
    });

    [Fact]
    public void ForwardAddRelu_rejects_an_identity_of_another_shape() => TestDevice.Use(dev =>
    {
        using var store = new ParameterStore();
        using var layer = new BatchNorm2dLayer(dev, store, "bn", 2);
        store.Build(dev);
        using var x = dev.Allocate<float>(2 * 2 * 3);
        var e = Assert.Throws<ArgumentException>(() => layer.ForwardAddRelu(new Tensor(x.View, [2, 2, 3, 1]), new Tensor(x.View, [2, 2, 1, 3]), true));
        Assert.Contains("identity shape", e.Message);
    });
}
