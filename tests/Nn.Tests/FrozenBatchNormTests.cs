using Engine.Kernels;
using Engine.Nn.Layers;
using Engine.Tests;

namespace Engine.Nn.Tests;

/// <summary>BN in eval mode while training: forward uses the running statistics, backward is that function's exact gradient.</summary>
public class FrozenBatchNormTests
{
    [Theory]
    [InlineData(3, 4, 5)]
    [InlineData(2, 3, 1)]
    public void Frozen_bn_backward_is_the_gradient_of_the_eval_forward(int n, int c, int hw) => TestDevice.Use(dev =>
    {
        var rng = Numerics.NewRandom(out int seed);
        var store = new ParameterStore();
        var bn = new BatchNorm2dLayer(dev, store, "bn", c) { Frozen = true };
        store.Build(dev);
        float[] gamma = Numerics.Uniform(rng, c, 0.5f, 1.5f), beta = Numerics.Uniform(rng, c), rm = Numerics.Uniform(rng, c), rv = Numerics.Uniform(rng, c, 0.5f, 2f);
        float[] values = new float[store.ParameterCount];
        gamma.CopyTo(values, (int)bn.Weight.Offset);
        beta.CopyTo(values, (int)bn.Bias.Offset);
        store.UploadValues(dev, values);
        float[] buffers = new float[store.BufferCount];
        rm.CopyTo(buffers, (int)bn.RunningMean.Offset);
        rv.CopyTo(buffers, (int)bn.RunningVar.Offset);
        store.UploadBuffers(dev, buffers);

        float[] x = Numerics.Uniform(rng, n * c * hw), g = Numerics.Uniform(rng, n * c * hw);
        using var dX = dev.Upload<float>(x);
        using var dG = dev.Upload<float>(g);
        Tensor y = bn.Forward(new Tensor(dX.View, new[] { n, c, hw, 1 }), training: true);
        double[] yRef = BatchNorm2d.Reference.ForwardEval(Numerics.ToDouble(x), Numerics.ToDouble(gamma), Numerics.ToDouble(beta), Numerics.ToDouble(rm), Numerics.ToDouble(rv), n, c, hw);
        Numerics.AssertClose(yRef, dev.Download(y.View), what: "frozen forward", seed: seed);
        Assert.Equal(buffers, store.DownloadBuffers(dev)); // running statistics are not updated

        Tensor dx = bn.Backward(new Tensor(dG.View, new[] { n, c, hw, 1 }));
        float[] dxHost = dev.Download(dx.View), grads = store.DownloadGrads(dev);
        double[] gd = Numerics.ToDouble(g);
        double F(double[] xs, double[] gm, double[] bt) => Numerics.Dot(gd, BatchNorm2d.Reference.ForwardEval(xs, gm, bt, Numerics.ToDouble(rm), Numerics.ToDouble(rv), n, c, hw));
        double[] xd = Numerics.ToDouble(x), gmd = Numerics.ToDouble(gamma), btd = Numerics.ToDouble(beta);
        Numerics.AssertFiniteDifference(v => F(v, gmd, btd), xd, Numerics.ToDouble(dxHost), rng, tol: 1e-4, what: "dx");
        Numerics.AssertFiniteDifference(v => F(xd, v, btd), gmd, Numerics.ToDouble(grads.AsSpan((int)bn.Weight.Offset, c).ToArray()), rng, tol: 1e-4, what: "dgamma");
        Numerics.AssertFiniteDifference(v => F(xd, gmd, v), btd, Numerics.ToDouble(grads.AsSpan((int)bn.Bias.Offset, c).ToArray()), rng, tol: 1e-4, what: "dbeta");
        bn.Dispose();
        store.Dispose();
    });
}
