namespace Engine.Runner;

/// <summary>Everything <c>engine train</c> is told, parsed once. Defaults are the seed benchmark's.</summary>
public sealed record TrainOptions
{
    public string Mode { get; init; } = "single";
    public string Device { get; init; } = "auto";
    public string Model { get; init; } = "resnet34";
    public string Stem { get; init; } = "imagenet";
    public int Width { get; init; } = 64;
    public string Dataset { get; init; } = "synthetic";
    public string? Data { get; init; }
    public int? TrainLimit { get; init; }
    public int? TestLimit { get; init; }
    public int Epochs { get; init; } = 4;
    public int BatchSize { get; init; } = 512;
    public float Lr { get; init; } = 0.1f;
    public float Momentum { get; init; } = 0.9f;
    public float WeightDecay { get; init; } = 5e-4f;
    public string Augment { get; init; } = "standard";
    public bool Shuffle { get; init; } = true;
    public int Seed { get; init; }
    public string? Init { get; init; }
    public string? Save { get; init; }
    public string? Resume { get; init; }
    public string? Output { get; init; }

    /// <summary>Checks what can be checked before any work starts; the message names the option.</summary>
    public void Validate()
    {
        if (Mode != "single") throw new ArgumentException($"--mode '{Mode}' is not available in this build: only 'single' is.");
        if (Epochs < 1) throw new ArgumentException($"--epochs must be at least 1, got {Epochs}.");
        if (BatchSize < 1) throw new ArgumentException($"--batch-size must be at least 1, got {BatchSize}.");
        if (TrainLimit is < 1) throw new ArgumentException($"--train-limit must be at least 1, got {TrainLimit}.");
        if (TestLimit is < 0) throw new ArgumentException($"--test-limit must be non-negative, got {TestLimit}.");
        if (Augment is not ("standard" or "none")) throw new ArgumentException($"--augment must be standard or none, got '{Augment}'.");
        if (Dataset is not ("cifar10" or "fashion-mnist" or "synthetic")) throw new ArgumentException($"--dataset must be cifar10, fashion-mnist or synthetic, got '{Dataset}'.");
        if (Init is not null && Resume is not null) throw new ArgumentException("--init and --resume cannot be used together: --resume restores the model itself.");
        if (Init is not null && !File.Exists(Init)) throw new ArgumentException($"--init {Init}: no such file.");
        if (Resume is not null && !File.Exists(Resume)) throw new ArgumentException($"--resume {Resume}: no such file.");
        foreach (var (flag, path) in new[] { ("--save", Save), ("--output", Output) })
        {
            string? dir = path is null ? null : Path.GetDirectoryName(Path.GetFullPath(path));
            if (dir is not null && !Directory.Exists(dir)) throw new ArgumentException($"{flag} {path}: folder {dir} does not exist.");
        }
    }
}
