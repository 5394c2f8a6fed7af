using Engine.Kernels;
using Engine.Nn.Layers;

namespace Engine.Nn.Tests;

/// <summary>The BN modes a fused layer is checked in: training, training with BN frozen (eval statistics), eval.</summary>
public enum BnMode { Train, Frozen, Eval }

/// <summary>A BatchNorm2dLayer in its own parameter store, with given gamma, beta and running statistics.</summary>
internal sealed class BnLayerFixture : IDisposable
{
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
