using System.Globalization;

namespace Engine.Nn.Checkpoints;

/// <summary>Where a run stands, saved beside the model so that an interrupted run resumes exactly.</summary>
/// <param name="EpochsDone">Epochs completed (the next epoch to run is this number).</param>
/// <param name="OptimizerSteps">SGD steps taken (0 means the momentum buffers are not yet initialised).</param>
/// <param name="Seed">The run's seed: shuffling and augmentation are pure functions of (seed, epoch, step).</param>
public sealed record TrainingState(int EpochsDone, long OptimizerSteps, int Seed, string Model, string Stem, int Width, string RunId);

/// <summary>
/// The model as a safetensors file with torchvision's state_dict names, dtypes and shapes (PyTorch
/// loads it into torchvision's resnet with strict=True), and the training state (momentum buffers,
/// epoch, step, seed) in a second file beside it. Both are written atomically.
/// </summary>
public static class ModelCheckpoint
{
    /// <summary>The training-state file that goes with <paramref name="modelPath"/>.</summary>
    public static string StatePath(string modelPath) => modelPath + ".train.safetensors";

    public static IEnumerable<SafeTensor> StateDict(ResNet model)
    {
        ParameterStore store = model.Store;
        float[] values = store.DownloadValues(model.Device), buffers = store.DownloadBuffers(model.Device);
        foreach (Parameter p in store.Entries)
        {
            long[] shape = Array.ConvertAll(p.Shape, d => (long)d);
            yield return p.Kind switch
            {
                StateKind.Parameter => SafeTensor.FromFloats(p.Name, shape, values.AsSpan((int)p.Offset, (int)p.Length).ToArray()),
                StateKind.Buffer => SafeTensor.FromFloats(p.Name, shape, buffers.AsSpan((int)p.Offset, (int)p.Length).ToArray()),
                _ => SafeTensor.FromInt64(p.Name, shape, new[] { p.Count }),
            };
        }
    }

    public static void SaveModel(string path, ResNet model, IReadOnlyDictionary<string, string>? metadata = null)
        => SafeTensors.Write(path, StateDict(model).ToList(), metadata);

    /// <summary>
    /// Loads a state_dict file into <paramref name="model"/> with load_state_dict(strict=True)'s rules:
    /// every entry present with its exact shape, nothing extra. float64 and float16 files are not accepted.
    /// </summary>
    public static IReadOnlyDictionary<string, string> LoadModel(string path, ResNet model)
    {
        var (tensors, metadata) = SafeTensors.Read(path);
        LoadStateDict(path, tensors, model, prefix: "");
        return metadata;
    }

    /// <summary>Loads entries named <c>prefix + state_dict name</c> (fixture files keep several state_dicts side by side).</summary>
    public static void LoadStateDict(string path, IReadOnlyDictionary<string, SafeTensor> tensors, ResNet model, string prefix, bool strict = true)
    {
        ParameterStore store = model.Store;
        var problems = new List<string>();
        var values = new float[store.ParameterCount];
        var buffers = new float[store.BufferCount];
        foreach (Parameter p in store.Entries)
        {
            if (!tensors.TryGetValue(prefix + p.Name, out SafeTensor? t))
            {
                problems.Add($"missing '{prefix + p.Name}' [{string.Join(',', p.Shape)}]");
                continue;
            }
            long[] want = Array.ConvertAll(p.Shape, d => (long)d);
            bool shapeOk = t.Shape.SequenceEqual(want) || (p.Kind == StateKind.Counter && t.Shape.Length == 1 && t.Shape[0] == 1);
            if (!shapeOk)
            {
                problems.Add($"'{t.Name}' has shape [{string.Join(',', t.Shape)}], the model needs [{string.Join(',', p.Shape)}]");
                continue;
            }
            if (p.Kind == StateKind.Counter)
            {
                if (t.DType != "I64") { problems.Add($"'{t.Name}' is {t.DType}, expected I64"); continue; }
                p.Count = t.ToInt64()[0];
                continue;
            }
            if (t.DType != "F32") { problems.Add($"'{t.Name}' is {t.DType}, expected F32"); continue; }
            float[] data = t.ToFloats();
            data.CopyTo(p.Kind == StateKind.Parameter ? values.AsSpan((int)p.Offset) : buffers.AsSpan((int)p.Offset));
        }
        if (strict)
        {
            var known = new HashSet<string>(store.Entries.Select(e => prefix + e.Name));
            foreach (string name in tensors.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && !known.Contains(k)).Take(10))
            {
                problems.Add($"unexpected '{name}' (not part of {model.Config.ModelName}, stem {model.Config.Stem}, width {model.Config.Width})");
            }
        }
        if (problems.Count > 0)
        {
            throw new CheckpointException($"{path} does not fit {model.Config.ModelName} (stem {model.Config.Stem}, width {model.Config.Width}): " +
                string.Join("; ", problems.Take(12)) + (problems.Count > 12 ? $"; and {problems.Count - 12} more" : ""));
        }
        store.UploadValues(model.Device, values);
        store.UploadBuffers(model.Device, buffers);
    }

    public static void SaveTrainingState(string modelPath, ResNet model, SgdOptimizer optimizer, TrainingState state)
    {
        float[] momentum = optimizer.DownloadMomentum();
        var tensors = model.Store.Parameters
            .Select(p => SafeTensor.FromFloats("momentum." + p.Name, Array.ConvertAll(p.Shape, d => (long)d), momentum.AsSpan((int)p.Offset, (int)p.Length).ToArray()))
            .ToList();
        var meta = new Dictionary<string, string>
        {
            ["epochs_done"] = state.EpochsDone.ToString(CultureInfo.InvariantCulture),
            ["optimizer_steps"] = state.OptimizerSteps.ToString(CultureInfo.InvariantCulture),
            ["seed"] = state.Seed.ToString(CultureInfo.InvariantCulture),
            ["model"] = state.Model,
            ["stem"] = state.Stem,
            ["width"] = state.Width.ToString(CultureInfo.InvariantCulture),
            ["run_id"] = state.RunId,
        };
        SafeTensors.Write(StatePath(modelPath), tensors, meta);
    }

    /// <summary>Loads the model and its training-state file; the two must come from the same save (same run id and step).</summary>
    public static TrainingState Resume(string modelPath, ResNet model, SgdOptimizer optimizer)
    {
        string statePath = StatePath(modelPath);
        if (!File.Exists(statePath))
        {
            throw new CheckpointException($"--resume {modelPath}: its training-state file {statePath} is missing (it is written beside the model by --save).");
        }
        IReadOnlyDictionary<string, string> modelMeta = LoadModel(modelPath, model);
        var (tensors, meta) = SafeTensors.Read(statePath);
        string Get(string key) => meta.TryGetValue(key, out string? v) ? v
            : throw new CheckpointException($"{statePath}: metadata '{key}' is missing.");
        var state = new TrainingState(
            int.Parse(Get("epochs_done"), CultureInfo.InvariantCulture),
            long.Parse(Get("optimizer_steps"), CultureInfo.InvariantCulture),
            int.Parse(Get("seed"), CultureInfo.InvariantCulture),
            Get("model"), Get("stem"), int.Parse(Get("width"), CultureInfo.InvariantCulture), Get("run_id"));
        if (modelMeta.TryGetValue("run_id", out string? modelRun) && modelMeta.TryGetValue("optimizer_steps", out string? modelSteps)
            && (modelRun != state.RunId || modelSteps != Get("optimizer_steps")))
        {
            throw new CheckpointException($"{modelPath} (run {modelRun}, step {modelSteps}) and {statePath} (run {state.RunId}, step {state.OptimizerSteps}) are not from the same save.");
        }
        var momentum = new float[model.Store.ParameterCount];
        foreach (Parameter p in model.Store.Parameters)
        {
            if (!tensors.TryGetValue("momentum." + p.Name, out SafeTensor? t) || t.Shape.Aggregate(1L, (a, b) => a * b) != p.Length)
            {
                throw new CheckpointException($"{statePath}: momentum buffer 'momentum.{p.Name}' is missing or mis-shaped.");
            }
            t.ToFloats().CopyTo(momentum.AsSpan((int)p.Offset));
        }
        optimizer.UploadMomentum(momentum);
        optimizer.Steps = state.OptimizerSteps;
        return state;
    }
}
