using System.Text.Json;
using Engine.Nn.Checkpoints;
using Engine.Runner.Training;
using Engine.Tests;

namespace Engine.Runner.Tests;

/// <summary>End-to-end training on the CPU accelerator at tiny sizes.</summary>
[Collection("cpu-training")]
public class TrainingTests
{
    private static TrainOptions Tiny(int epochs, int trainLimit = 32, int width = 4) => new()
    {
        Device = "cpu",
        Model = "resnet18",
        Stem = "imagenet",
        Width = width,
        Dataset = "synthetic",
        TrainLimit = trainLimit,
        TestLimit = 16,
        Epochs = epochs,
        BatchSize = 16,
        Seed = 5,
    };

    private static RunResult Train(TrainOptions o)
    {
        using var trainer = new SingleTrainer(o, TextWriter.Null, TextWriter.Null);
        return trainer.Run();
    }

    [Fact]
    public void Tiny_resnet_fits_64_images()
    {
        var o = Tiny(epochs: 30, trainLimit: 64, width: 8) with { Augment = "none", Lr = 0.02f, TestLimit = 0 };
        RunResult r = Train(o);
        Assert.Equal(30, r.Epochs.Count);
        // One epoch's accuracy is measured while SGD (batch 16, BN's batch statistics) still jumps about: a network that
        // fits reaches 95% within the last five epochs and its loss there is a quarter of the first epoch's or less.
        var last = r.Epochs.TakeLast(5).ToList();
        string losses = string.Join(", ", r.Epochs.Select(e => e.TrainLoss.ToString("F3")));
        Assert.True(last.Max(e => e.TrainAccuracy) >= 0.95, $"best train accuracy of the last five epochs: {last.Max(e => e.TrainAccuracy):P1}; losses {losses}");
        Assert.True(last.Average(e => e.TrainLoss) < r.Epochs[0].TrainLoss / 4, $"the loss did not fall: {losses}");
    }

    [Fact]
    public void Stopped_and_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one()
    {
        string dir = Directory.CreateTempSubdirectory("engine-resume").FullName;
        try
        {
            string straight = Path.Combine(dir, "straight.safetensors"), resumed = Path.Combine(dir, "resumed.safetensors");
            Train(Tiny(epochs: 2) with { Save = straight });
            Train(Tiny(epochs: 1) with { Save = resumed });
            Train(Tiny(epochs: 2) with { Resume = resumed, Save = resumed });

            var a = SafeTensors.Read(straight).Tensors;
            var b = SafeTensors.Read(resumed).Tensors;
            Assert.Equal(a.Keys.OrderBy(k => k), b.Keys.OrderBy(k => k));
            foreach (string k in a.Keys)
            {
                Assert.True(a[k].Data.AsSpan().SequenceEqual(b[k].Data), $"{k} differs between the straight and the resumed run");
            }
            var sa = SafeTensors.Read(ModelCheckpoint.StatePath(straight)).Tensors;
            var sb = SafeTensors.Read(ModelCheckpoint.StatePath(resumed)).Tensors;
            foreach (string k in sa.Keys)
            {
                Assert.True(sa[k].Data.AsSpan().SequenceEqual(sb[k].Data), $"{k} differs between the straight and the resumed run");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Output_json_has_the_documented_fields()
    {
        string path = Path.Combine(Path.GetTempPath(), $"engine-run-{Guid.NewGuid():N}.json");
        try
        {
            Train(Tiny(epochs: 2) with { Output = path });
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
            JsonElement root = doc.RootElement;
            Assert.Equal("resnet18", root.GetProperty("config").GetProperty("model").GetString());
            Assert.Contains("cpu", root.GetProperty("device").GetString());
            JsonElement epochs = root.GetProperty("epochs");
            Assert.Equal(2, epochs.GetArrayLength());
            double s1 = epochs[0].GetProperty("seconds").GetDouble(), s2 = epochs[1].GetProperty("seconds").GetDouble();
            foreach (JsonElement e in epochs.EnumerateArray())
            {
                Assert.True(e.GetProperty("seconds").GetDouble() > 0);
                Assert.InRange(e.GetProperty("train_loss").GetDouble(), 0, 10);
                Assert.InRange(e.GetProperty("train_accuracy").GetDouble(), 0, 1);
                Assert.InRange(e.GetProperty("test_accuracy").GetDouble(), 0, 1);
            }
            Assert.Equal(1, epochs[0].GetProperty("epoch").GetInt32());
            Assert.Equal((s1 + s2) / 2, root.GetProperty("mean_epoch_seconds").GetDouble(), 9);
            Assert.Equal(s2, root.GetProperty("mean_epoch_seconds_excluding_first").GetDouble(), 9);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_diverging_loss_stops_the_run_naming_epoch_and_step()
    {
        var e = Assert.Throws<TrainingDivergedException>(() => Train(Tiny(epochs: 2) with { Lr = 1e30f, Augment = "none" }));
        Assert.Contains("epoch 1", e.Message);
        Assert.Contains("step", e.Message);
        Assert.InRange(e.Step, 1, 2);
    }

    [Fact]
    public void Bad_settings_give_clear_errors()
    {
        Assert.Contains("more than the 32 training images", Assert.Throws<ArgumentException>(() => Train(Tiny(1) with { BatchSize = 64 })).Message);
        Assert.Contains("resnet50", Assert.Throws<ArgumentException>(() => Train(Tiny(1) with { Model = "resnet50" })).Message);
        Assert.Contains("tpu", Assert.Throws<ArgumentException>(() => Train(Tiny(1) with { Device = "tpu" })).Message);
        Assert.Contains("cuda:0", Assert.Throws<ArgumentException>(() => Train(Tiny(1) with { Device = "cuda:0" })).Message);
        Assert.Contains("/no/such/file", Assert.Throws<ArgumentException>(() => Train(Tiny(1) with { Init = "/no/such/file" })).Message);
    }

    [Fact]
    public void A_checkpoint_of_another_width_is_refused_naming_the_tensor()
    {
        string path = Path.Combine(Path.GetTempPath(), $"engine-w4-{Guid.NewGuid():N}.safetensors");
        try
        {
            Train(Tiny(1) with { Save = path });
            var e = Assert.Throws<CheckpointException>(() => Train(Tiny(1, width: 8) with { Init = path }));
            Assert.Contains(path, e.Message);
            Assert.Contains("conv1.weight", e.Message);
        }
        finally
        {
            File.Delete(path);
            File.Delete(ModelCheckpoint.StatePath(path));
        }
    }
}
