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
/// epoch, step, seed) in a second file beside it. <see cref="Save"/> writes the two as one unit: a
/// kill at any instant leaves a complete pair from one save that <see cref="Resume"/> finds.
/// </summary>
public static class ModelCheckpoint
{
    /// <summary>The training-state file that goes with <paramref name="modelPath"/>.</summary>
    public static string StatePath(string modelPath) => modelPath + ".train.safetensors";

    /// <summary>The previous save's model, kept while a new save is under way (it pairs with the state file until the new one replaces it).</summary>
    public static string PreviousModelPath(string modelPath) => modelPath + ".previous";

    /// <summary>The steps of <see cref="Save"/>, in order; the state file's rename is the one that commits.</summary>
    public static readonly IReadOnlyList<string> SaveSteps =
    [
        "remove leftovers", "write model", "write state", "keep previous model", "rename model", "rename state", "drop previous model",
    ];

    /// <summary>Whether <paramref name="modelPath"/> may hold a checkpoint (the model, or the previous one a save in progress set aside).</summary>
    public static bool Exists(string modelPath) => File.Exists(modelPath) || File.Exists(PreviousModelPath(modelPath));

    /// <summary>
    /// Writes the model and its training state as one unit. Both go to flushed temporary files first;
    /// the current model is set aside as <see cref="PreviousModelPath"/>, the new model renamed into
    /// place, and the new state file's rename commits the save. Until then the state file still pairs
    /// with the set-aside model, so a kill at any instant leaves one complete checkpoint, at worst the
    /// previous save's. Temporary files and a set-aside model left by a killed save are dealt with first.
    /// </summary>
    /// <param name="beforeStep">Test hook, called with each of <see cref="SaveSteps"/> before it runs (a throw there acts as a kill).</param>
    public static void Save(string modelPath, ResNet model, IOptimizer optimizer, TrainingState state,
        IReadOnlyDictionary<string, string>? modelMetadata = null, Action<string>? beforeStep = null)
        => Save(modelPath, model, optimizer.DownloadMomentum(), state, modelMetadata, beforeStep);

    /// <summary>As above, with the momentum already in host memory in the store's flat layout (a sharded optimizer gathers it on every rank first).</summary>
    public static void Save(string modelPath, ResNet model, float[] momentum, TrainingState state,
        IReadOnlyDictionary<string, string>? modelMetadata = null, Action<string>? beforeStep = null)
    {
        string full = Path.GetFullPath(modelPath), statePath = StatePath(full), previous = PreviousModelPath(full);
        void Step(string name) => beforeStep?.Invoke(name);

        Step(SaveSteps[0]);
        RemoveLeftovers(full);
        var meta = new Dictionary<string, string>(modelMetadata ?? new Dictionary<string, string>())
        {
            [RunIdKey] = state.RunId,
            [StepsKey] = state.OptimizerSteps.ToString(CultureInfo.InvariantCulture),
        };
        Step(SaveSteps[1]);
        string modelTemp = SafeTensors.WriteTemporary(full, StateDict(model).ToList(), meta);
        Step(SaveSteps[2]);
        string stateTemp = SafeTensors.WriteTemporary(statePath, StateTensors(model, momentum), StateMetadata(state));
        Step(SaveSteps[3]);
        if (File.Exists(full)) File.Move(full, previous, overwrite: true);
        Step(SaveSteps[4]);
        File.Move(modelTemp, full, overwrite: true);
        Step(SaveSteps[5]);
        File.Move(stateTemp, statePath, overwrite: true);
        Step(SaveSteps[6]);
        File.Delete(previous);
    }

    private const string RunIdKey = "run_id", StepsKey = "optimizer_steps";

    /// <summary>
    /// Undoes what a killed save left: its temporary files go, and a set-aside model either goes (the
    /// model beside it pairs with the state) or is put back (it is the one that pairs).
    /// </summary>
    private static void RemoveLeftovers(string full)
    {
        string folder = Path.GetDirectoryName(full)!;
        foreach (string pattern in new[] { SafeTensors.TemporaryPattern(full), SafeTensors.TemporaryPattern(StatePath(full)) })
        {
            foreach (string temp in Directory.EnumerateFiles(folder, pattern)) File.Delete(temp);
        }
        string previous = PreviousModelPath(full);
        if (!File.Exists(previous)) return;
        if (!File.Exists(full) || !PairsWithState(full) && PairsWithState(previous, full))
        {
            File.Move(previous, full, overwrite: true);
        }
        else
        {
            File.Delete(previous);
        }
    }

    /// <summary>Whether the model file at <paramref name="modelFile"/> comes from the same save as the state file of <paramref name="modelPath"/>.</summary>
    private static bool PairsWithState(string modelFile, string? modelPath = null)
    {
        string statePath = StatePath(modelPath ?? modelFile);
        if (!File.Exists(modelFile) || !File.Exists(statePath)) return false;
        try
        {
            IReadOnlyDictionary<string, string> m = SafeTensors.ReadMetadata(modelFile), s = SafeTensors.ReadMetadata(statePath);
            return m.TryGetValue(RunIdKey, out string? run) && m.TryGetValue(StepsKey, out string? steps)
                && s.TryGetValue(RunIdKey, out string? stateRun) && s.TryGetValue(StepsKey, out string? stateSteps)
                && run == stateRun && steps == stateSteps;
        }
        catch (CheckpointException)
        {
            return false;
        }
    }

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
        var values = new float[store.FlatLength];
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

    private static List<SafeTensor> StateTensors(ResNet model, float[] momentum)
    {
        return model.Store.Parameters
            .Select(p => SafeTensor.FromFloats("momentum." + p.Name, Array.ConvertAll(p.Shape, d => (long)d), momentum.AsSpan((int)p.Offset, (int)p.Length).ToArray()))
            .ToList();
    }

    private static Dictionary<string, string> StateMetadata(TrainingState state) => new()
    {
        ["epochs_done"] = state.EpochsDone.ToString(CultureInfo.InvariantCulture),
        [StepsKey] = state.OptimizerSteps.ToString(CultureInfo.InvariantCulture),
        ["seed"] = state.Seed.ToString(CultureInfo.InvariantCulture),
        ["model"] = state.Model,
        ["stem"] = state.Stem,
        ["width"] = state.Width.ToString(CultureInfo.InvariantCulture),
        [RunIdKey] = state.RunId,
    };

    /// <summary>
    /// Loads the last complete checkpoint at <paramref name="modelPath"/>: the state file and the model
    /// file from the same save, the set-aside previous model when a save was killed after moving the
    /// new model into place but before committing its state. Returns the state and the model file used.
    /// </summary>
    public static (TrainingState State, string ModelFile) Resume(string modelPath, ResNet model, IOptimizer optimizer)
    {
        string statePath = StatePath(modelPath);
        if (!File.Exists(statePath))
        {
            throw new CheckpointException($"--resume {modelPath}: its training-state file {statePath} is missing (it is written beside the model by --save).");
        }
        string? modelFile = new[] { modelPath, PreviousModelPath(modelPath) }.FirstOrDefault(f => PairsWithState(f, modelPath));
        if (modelFile is null)
        {
            IReadOnlyDictionary<string, string> sm = SafeTensors.ReadMetadata(statePath);
            string Describe(string f) => File.Exists(f) && SafeTensors.ReadMetadata(f) is var m
                ? $"{f} (run {m.GetValueOrDefault(RunIdKey)}, step {m.GetValueOrDefault(StepsKey)})" : $"{f} (missing)";
            throw new CheckpointException($"--resume {modelPath}: no model file is from the same save as {statePath} (run {sm.GetValueOrDefault(RunIdKey)}, step {sm.GetValueOrDefault(StepsKey)}): {Describe(modelPath)}.");
        }
        LoadModel(modelFile, model);
        var (tensors, meta) = SafeTensors.Read(statePath);
        string Get(string key) => meta.TryGetValue(key, out string? v) ? v
            : throw new CheckpointException($"{statePath}: metadata '{key}' is missing.");
        var state = new TrainingState(
            int.Parse(Get("epochs_done"), CultureInfo.InvariantCulture),
            long.Parse(Get(StepsKey), CultureInfo.InvariantCulture),
            int.Parse(Get("seed"), CultureInfo.InvariantCulture),
            Get("model"), Get("stem"), int.Parse(Get("width"), CultureInfo.InvariantCulture), Get(RunIdKey));
        var momentum = new float[model.Store.FlatLength];
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
        return (state, modelFile);
    }
}
