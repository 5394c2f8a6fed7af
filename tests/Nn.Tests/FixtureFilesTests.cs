using System.Text.Json;
using Engine.Nn.Checkpoints;

namespace Engine.Nn.Tests;

/// <summary>
/// The PyTorch fixtures written by tests/fixtures/make_fixtures.py are present, readable, and hold what
/// the parity tests expect. (The parity itself is tested against the model.)
/// </summary>
public class FixtureFilesTests
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "fixtures", name);

    private static List<(string Name, long[] Shape, string DType)> StateDictNames(string model)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Fixture("resnet_state_dict_names.json")));
        return doc.RootElement.GetProperty(model).EnumerateArray()
            .Select(e => (e[0].GetString()!, e[1].EnumerateArray().Select(d => d.GetInt64()).ToArray(), e[2].GetString()!))
            .ToList();
    }

    [Fact]
    public void State_dict_names_describe_torchvision_resnet18_and_resnet34()
    {
        var r18 = StateDictNames("resnet18");
        var r34 = StateDictNames("resnet34");
        Assert.Equal(122, r18.Count);
        Assert.Equal(218, r34.Count);
        Assert.Equal(("conv1.weight", "F32"), (r18[0].Name, r18[0].DType));
        Assert.Equal(new long[] { 64, 3, 7, 7 }, r18[0].Shape);
        Assert.Equal("fc.weight", r34[^2].Name);
        Assert.Equal(new long[] { 10, 512 }, r34[^2].Shape);
        Assert.Contains(r34, e => e.Name == "layer3.5.bn2.num_batches_tracked" && e.Shape.Length == 0 && e.DType == "I64");
        Assert.Contains(r18, e => e.Name == "layer2.0.downsample.0.weight" && e.Shape.SequenceEqual(new long[] { 128, 64, 1, 1 }));
    }

    [Theory]
    [InlineData("imagenet", 7)]
    [InlineData("cifar", 3)]
    public void Narrow_resnet18_fixture_holds_every_expected_tensor(string stem, int kernel)
    {
        var (tensors, metadata) = SafeTensors.Read(Fixture($"resnet18_w4_{stem}.safetensors"));
        Assert.Equal(stem, metadata["stem"]);
        Assert.Equal("4", metadata["width"]);
        Assert.Equal("0.1", metadata["lr"]);
        Assert.Equal("0.9", metadata["momentum"]);
        Assert.Equal("0.0005", metadata["weight_decay"]);

        // Same names, order and dtypes as torchvision's resnet18; channels are 64/4 = 16 times fewer.
        var names = StateDictNames("resnet18");
        var init = tensors.Keys.Where(k => k.StartsWith("init.", StringComparison.Ordinal)).Select(k => k[5..]).ToList();
        Assert.Equal(names.Select(n => n.Name), init);
        foreach (var (name, shape, dtype) in names)
        {
            foreach (string prefix in new[] { "init.", "step1.", "step2." })
            {
                SafeTensor t = tensors[prefix + name];
                Assert.Equal(dtype, t.DType);
                Assert.Equal(shape.Length, t.Shape.Length);
            }
            bool isParameter = dtype == "F32" && !name.Contains("running_", StringComparison.Ordinal);
            Assert.Equal(isParameter, tensors.ContainsKey("grad." + name));
        }
        Assert.Equal(new long[] { 4, 3, kernel, kernel }, tensors["init.conv1.weight"].Shape);
        Assert.Equal(new long[] { 10, 32 }, tensors["init.fc.weight"].Shape);
        Assert.Equal([0L], tensors["init.bn1.num_batches_tracked"].ToInt64());
        Assert.Equal([2L], tensors["step2.bn1.num_batches_tracked"].ToInt64());

        foreach (string input in new[] { "input", "input2" })
        {
            Assert.Equal(new long[] { 8, 3, 32, 32 }, tensors[input].Shape);
            Assert.All(tensors[input].ToFloats(), v => Assert.True(float.IsFinite(v)));
        }
        foreach (string labels in new[] { "labels", "labels2" })
        {
            Assert.Equal(new long[] { 8 }, tensors[labels].Shape);
            Assert.All(tensors[labels].ToInt64(), v => Assert.InRange(v, 0, 9));
        }
        Assert.Equal(new long[] { 8, 10 }, tensors["logits"].Shape);
        Assert.Empty(tensors["loss"].Shape);
        float loss = tensors["loss"].ToFloats()[0];
        Assert.True(float.IsFinite(loss) && loss > 0, $"loss {loss}");

        // One SGD step moved the weights.
        Assert.NotEqual(tensors["init.fc.weight"].Data, tensors["step1.fc.weight"].Data);
        Assert.NotEqual(tensors["step1.fc.weight"].Data, tensors["step2.fc.weight"].Data);
    }
}
