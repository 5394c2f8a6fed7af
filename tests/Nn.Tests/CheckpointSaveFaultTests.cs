using Engine.Nn.Checkpoints;
using Engine.Tests;

namespace Engine.Nn.Tests;

/// <summary>
/// A save killed at any of its steps leaves a complete checkpoint: resuming gives the model and the
/// momentum of one save (the interrupted one once its state is committed, the previous one before),
/// never a mixed pair; and the next save removes what the killed one left behind.
/// </summary>
public class CheckpointSaveFaultTests
{
    private sealed class SimulatedKill(string step) : Exception($"killed before '{step}'");

    /// <summary>What one save holds, to compare a resumed model against.</summary>
    private sealed record Saved(TrainingState State, float[] Values, float[] Momentum);

    private static Saved Save(string path, ResNet model, SgdOptimizer optimizer, int epoch, string? killBefore = null)
    {
        model.Initialize(seed: 100 + epoch);
        float[] momentum = Enumerable.Range(0, checked((int)model.Store.ParameterCount)).Select(i => epoch + i * 1e-3f).ToArray();
        optimizer.UploadMomentum(momentum);
        var state = new TrainingState(epoch, 10L * epoch, 7, model.Config.ModelName, model.Config.Stem, model.Config.Width, "run1");
        var saved = new Saved(state, model.Store.DownloadValues(model.Device), momentum);
        try
        {
            ModelCheckpoint.Save(path, model, optimizer, state, beforeStep: step =>
            {
                if (step == killBefore) throw new SimulatedKill(step);
            });
        }
        catch (SimulatedKill)
        {
        }
        return saved;
    }

    private static void AssertResumesTo(string path, ResNet model, SgdOptimizer optimizer, Saved expected, string when)
    {
        model.Initialize(seed: 999);
        optimizer.UploadMomentum(new float[model.Store.ParameterCount]);
        var (state, _) = ModelCheckpoint.Resume(path, model, optimizer);
        Assert.True(expected.State == state, $"{when}: resumed epoch {state.EpochsDone}, expected {expected.State.EpochsDone}");
        Assert.True(expected.Values.AsSpan().SequenceEqual(model.Store.DownloadValues(model.Device)), $"{when}: the weights are not epoch {expected.State.EpochsDone}'s");
        Assert.True(expected.Momentum.AsSpan().SequenceEqual(optimizer.DownloadMomentum()), $"{when}: the momentum is not epoch {expected.State.EpochsDone}'s");
    }

    private static string[] Leftovers(string dir, string path) => Directory.GetFiles(dir)
        .Where(f => f != path && f != ModelCheckpoint.StatePath(path)).Select(Path.GetFileName).ToArray()!;

    [Fact]
    public void A_save_killed_at_any_step_resumes_from_the_last_complete_one() => TestDevice.Use(dev =>
    {
        using var model = new ResNet(dev, new ResNetConfig(18, "cifar", 2));
        using var optimizer = new SgdOptimizer(dev, model.Store, 0.1f, 0.9f, 5e-4f);
        int commit = ModelCheckpoint.SaveSteps.ToList().IndexOf("rename state");
        foreach ((string step, int k) in ModelCheckpoint.SaveSteps.Select((s, k) => (s, k)))
        {
            string dir = Directory.CreateTempSubdirectory("engine-ckpt-kill").FullName;
            try
            {
                string path = Path.Combine(dir, "model.safetensors");
                Saved first = Save(path, model, optimizer, epoch: 1);
                Saved second = Save(path, model, optimizer, epoch: 2, killBefore: step);
                Saved lastComplete = k > commit ? second : first;
                AssertResumesTo(path, model, optimizer, lastComplete, $"save of epoch 2 killed before '{step}'");

                // A second kill at the same point, on top of the first one's leftovers, loses no more.
                Saved third = Save(path, model, optimizer, epoch: 3, killBefore: step);
                AssertResumesTo(path, model, optimizer, k > commit ? third : lastComplete, $"saves of epochs 2 and 3 killed before '{step}'");

                // What a kill in the middle of writing leaves: a partial temporary file.
                File.WriteAllBytes(Path.Combine(dir, $".model.safetensors.{Guid.NewGuid():N}.tmp"), new byte[17]);
                Saved fourth = Save(path, model, optimizer, epoch: 4);
                AssertResumesTo(path, model, optimizer, fourth, $"the save after a kill before '{step}'");
                Assert.True(Leftovers(dir, path).Length == 0, $"left after the next save (kill before '{step}'): {string.Join(", ", Leftovers(dir, path))}");
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    });

    [Fact]
    public void A_model_and_state_from_different_saves_are_refused_naming_both()
    {
        TestDevice.Use(dev =>
        {
            string dir = Directory.CreateTempSubdirectory("engine-ckpt-mixed").FullName;
            try
            {
                using var model = new ResNet(dev, new ResNetConfig(18, "cifar", 2));
                using var optimizer = new SgdOptimizer(dev, model.Store, 0.1f, 0.9f, 5e-4f);
                string path = Path.Combine(dir, "model.safetensors"), other = Path.Combine(dir, "other.safetensors");
                Save(path, model, optimizer, epoch: 1);
                Save(other, model, optimizer, epoch: 2);
                File.Copy(other, path, overwrite: true);
                var e = Assert.Throws<CheckpointException>(() => ModelCheckpoint.Resume(path, model, optimizer));
                Assert.Contains(ModelCheckpoint.StatePath(path), e.Message);
                Assert.Contains("step 20", e.Message);
                Assert.Contains("step 10", e.Message);
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        });
    }
}
