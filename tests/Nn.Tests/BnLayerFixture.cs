using Engine.Kernels;
using Engine.Nn.Layers;
using Engine.Tests;

namespace Engine.Nn.Tests;

/// <summary>The BN modes a fused layer is checked in: training, training with BN frozen (eval statistics), eval.</summary>
public enum BnMode { Train, Frozen, Eval }

/// <summary>A BatchNorm2dLayer in its own parameter store, with given gamma, beta and running statistics.</summary>
internal sealed class BnLayerFixture : IDisposable
{
    /// <summary>The shapes a fused layer is checked at in each mode: (mode, n, c, hw), m = 2 among them.</summary>
    public static IEnumerable<object[]> Cases() =>
    [
        [BnMode.Train, 3, 4, 5], [BnMode.Train, 2, 3, 1], [BnMode.Frozen, 3, 4, 5], [BnMode.Frozen, 2, 3, 1], [BnMode.Eval, 2, 3, 7],
    ];

    /// <summary>Random gamma in [0.5, 1.5], beta in [-1, 1], running mean in [-0.5, 0.5] and running var in [0.5, 2].</summary>
    public static (float[] Gamma, float[] Beta, float[] RunningMean, float[] RunningVar) RandomParameters(Random rng, int c) =>
        (Numerics.Uniform(rng, c, 0.5f, 1.5f), Numerics.Uniform(rng, c), Numerics.Uniform(rng, c, -0.5f, 0.5f), Numerics.Uniform(rng, c, 0.5f, 2f));

    public BnLayerFixture(Device dev, int c, bool fuseRelu, bool frozen, float[] gamma, float[] beta, float[] rm, float[] rv)
    {
        Store = new ParameterStore();
        Layer = new BatchNorm2dLayer(dev, Store, "bn", c) { FuseRelu = fuseRelu, Frozen = frozen };
        Store.Build(dev);
        float[] values = new float[Store.ParameterCount], buffers = new float[Store.BufferCount];
        gamma.CopyTo(values, (int)Layer.Weight.Offset);
        beta.CopyTo(values, (int)Layer.Bias.Offset);
        rm.CopyTo(buffers, (int)Layer.RunningMean.Offset);
        rv.CopyTo(buffers, (int)Layer.RunningVar.Offset);
        Store.UploadValues(dev, values);
        Store.UploadBuffers(dev, buffers);
    }

    public ParameterStore Store { get; }
    public BatchNorm2dLayer Layer { get; }

    public void Dispose()
    {
        Layer.Dispose();
        Store.Dispose();
    }
}
