using Engine.Nn.Checkpoints;
using Engine.Tests;

namespace Engine.Nn.Tests;

/// <summary>A state_dict file PyTorch wrote (tests/fixtures/torch_interop.py) loads as --init does, every tensor in its place.</summary>
public class TorchCheckpointTests
{
    [Fact]
    public void A_state_dict_written_by_pytorch_loads_into_the_model() => TestDevice.Use(dev =>
    {
        string path = Path.Combine(AppContext.BaseDirectory, "fixtures", "resnet18_w4_torch_state_dict.safetensors");
        using var model = new ResNet(dev, new ResNetConfig(18, "imagenet", 4));
        model.Initialize(seed: 1);
        ModelCheckpoint.LoadModel(path, model);
        var file = SafeTensors.Read(path).Tensors;
        float[] values = model.Store.DownloadValues(dev), buffers = model.Store.DownloadBuffers(dev);
        foreach (Parameter p in model.Store.Entries)
        {
            switch (p.Kind)
            {
                case StateKind.Counter:
                    Assert.Equal(file[p.Name].ToInt64()[0], p.Count);
                    break;
                default:
                    float[] mine = (p.Kind == StateKind.Parameter ? values : buffers).AsSpan((int)p.Offset, (int)p.Length).ToArray();
                    Assert.True(file[p.Name].ToFloats().AsSpan().SequenceEqual(mine), $"{p.Name} differs from the file");
                    break;
            }
        }
    });

    [Fact]
    public void Saving_writes_torchvision_names_dtypes_and_shapes_and_reloads_exactly() => TestDevice.Use(dev =>
    {
        string path = Path.Combine(Path.GetTempPath(), $"engine-save-{Guid.NewGuid():N}.safetensors");
        try
        {
            using var a = new ResNet(dev, new ResNetConfig(18, "cifar", 2));
            a.Initialize(seed: 4);
            ModelCheckpoint.SaveModel(path, a);
            var file = SafeTensors.Read(path).Tensors;
            Assert.Equal(a.Store.Entries.Select(e => e.Name).OrderBy(n => n), file.Keys.OrderBy(n => n));
            Assert.Equal("I64", file["bn1.num_batches_tracked"].DType);
            Assert.Empty(file["bn1.num_batches_tracked"].Shape);
            Assert.Equal(new long[] { 2, 3, 3, 3 }, file["conv1.weight"].Shape);
            using var b = new ResNet(dev, new ResNetConfig(18, "cifar", 2));
            ModelCheckpoint.LoadModel(path, b);
            Assert.Equal(a.Store.DownloadValues(dev), b.Store.DownloadValues(dev));
        }
        finally
        {
            File.Delete(path);
        }
    });
}
