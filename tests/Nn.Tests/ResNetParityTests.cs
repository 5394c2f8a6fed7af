using System.Text.Json;
using Engine.Nn.Checkpoints;
using Engine.Tests;
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Nn.Tests;

/// <summary>
/// The whole model against PyTorch itself: a narrow torchvision ResNet-18 (fixtures written by
/// tests/fixtures/make_fixtures.py with Debian's python3-torch) must give the same logits, loss, every
/// parameter gradient, and the same parameters and BN running statistics after one and two SGD steps.
/// </summary>
public class ResNetParityTests
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "fixtures", name);

    [Theory]
    [InlineData("imagenet")]
    [InlineData("cifar")]
    public void Narrow_resnet18_matches_pytorch_through_two_sgd_steps(string stem) => TestDevice.Use(dev =>
    {
        var (t, meta) = SafeTensors.Read(Fixture($"resnet18_w4_{stem}.safetensors"));
        using var model = new ResNet(dev, new ResNetConfig(18, stem, int.Parse(meta["width"])));
        ModelCheckpoint.LoadStateDict("fixture", t, model, "init.", strict: false);
        using var optimizer = new SgdOptimizer(dev, model.Store, float.Parse(meta["lr"]), float.Parse(meta["momentum"]), float.Parse(meta["weight_decay"]));
        using var loss = new CrossEntropyLoss(dev);

        float[] Step(string input, string labels)
        {
            float[] x = t[input].ToFloats();
            int[] y = Array.ConvertAll(t[labels].ToInt64(), v => (int)v);
            using var dx = dev.Upload<float>(x);
            using var dy = dev.Upload<int>(y);
            Tensor logits = model.Forward(new Tensor(dx.View, new[] { y.Length, 3, 32, 32 }), training: true);
            float[] logitsHost = dev.Download(logits.View);
            loss.Forward(logits, dy.View);
            model.Backward(loss.Backward());
            float l = loss.Read().Loss;
            return logitsHost.Append(l).ToArray();
        }

        // Step 1: logits, loss, gradients, then parameters and buffers after the update.
        float[] out1 = Step("input", "labels");
        AssertTensor(t["logits"].ToFloats(), out1[..^1], "logits");
        AssertTensor(t["loss"].ToFloats(), new[] { out1[^1] }, "loss");
        float[] grads = model.Store.DownloadGrads(dev);
        foreach (Parameter p in model.Store.Parameters)
        {
            AssertTensor(t["grad." + p.Name].ToFloats(), grads.AsSpan((int)p.Offset, (int)p.Length).ToArray(), "grad." + p.Name, looser: 3);
        }
        optimizer.Step();
        AssertState(t, "step1.", model, dev);

        // Step 2 on a second batch: momentum now carries the first step.
        Step("input2", "labels2");
        optimizer.Step();
        AssertState(t, "step2.", model, dev);
    });

    private static void AssertState(IReadOnlyDictionary<string, SafeTensor> t, string prefix, ResNet model, Engine.Kernels.Device dev)
    {
        float[] values = model.Store.DownloadValues(dev), buffers = model.Store.DownloadBuffers(dev);
        foreach (Parameter p in model.Store.Entries)
        {
            SafeTensor expected = t[prefix + p.Name];
            switch (p.Kind)
            {
                case StateKind.Counter:
                    Assert.Equal(expected.ToInt64()[0], p.Count);
                    break;
                case StateKind.Parameter:
                    AssertTensor(expected.ToFloats(), values.AsSpan((int)p.Offset, (int)p.Length).ToArray(), prefix + p.Name);
                    break;
                default:
                    AssertTensor(expected.ToFloats(), buffers.AsSpan((int)p.Offset, (int)p.Length).ToArray(), prefix + p.Name);
                    break;
            }
        }
    }

    /// <summary>
    /// fp32 against fp32 with different summation orders: each element within 2e-3 relative plus 1e-4 of the
    /// tensor's largest magnitude (gradients of the deep layers pass through many reductions: 3x that).
    /// </summary>
    private static void AssertTensor(float[] expected, float[] actual, string what, double looser = 1)
    {
        double scale = expected.Length == 0 ? 0 : expected.Max(v => Math.Abs((double)v));
        Numerics.AssertClose(Array.ConvertAll(expected, v => (double)v), actual, rtol: 2e-3 * looser, atol: 1e-4 * looser * scale + 1e-7, what: what);
    }

    [Theory]
    [InlineData("resnet18", 18)]
    [InlineData("resnet34", 34)]
    public void State_dict_names_and_shapes_equal_torchvision(string name, int depth) => TestDevice.Use(dev =>
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Fixture("resnet_state_dict_names.json")));
        var expected = doc.RootElement.GetProperty(name).EnumerateArray()
            .Select(e => $"{e[0].GetString()} [{string.Join(',', e[1].EnumerateArray().Select(d => d.GetInt64()))}] {e[2].GetString()}")
            .ToList();
        using var model = new ResNet(dev, new ResNetConfig(depth, "imagenet", 64));
        var actual = model.Store.Entries
            .Select(p => $"{p.Name} [{string.Join(',', p.Shape)}] {(p.Kind == StateKind.Counter ? "I64" : "F32")}")
            .ToList();
        Assert.Equal(expected, actual);
    });
}
