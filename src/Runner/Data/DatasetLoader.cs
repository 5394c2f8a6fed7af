namespace Engine.Runner.Data;

/// <summary>Loads a dataset's train and test splits by name: <c>cifar10</c>, <c>fashion-mnist</c> or <c>synthetic</c>.</summary>
public static class DatasetLoader
{
    public const string DefaultFashionMnistPath = "/usr/share/datasets/fashion-mnist";

    /// <summary>Names accepted by <see cref="Load"/>, as the CLI lists them.</summary>
    public static IReadOnlyList<string> Names { get; } = ["cifar10", "fashion-mnist", "synthetic"];

    /// <summary>
    /// Loads <paramref name="dataset"/> from <paramref name="path"/>.
    /// cifar10: the <c>cifar-10-batches-bin</c> folder, the <c>cifar-10-binary.tar.gz</c> archive (read in
    /// place), or a folder holding either (default <c>./data</c>). fashion-mnist: a folder of IDX files,
    /// gzip or plain (default <see cref="DefaultFashionMnistPath"/>, where Debian's dataset-fashion-mnist
    /// installs them). synthetic: generated from <paramref name="seed"/>; the path is ignored.
    /// </summary>
    /// <exception cref="DataException">Unknown name, missing or malformed files.</exception>
    public static (ImageDataset Train, ImageDataset Test) Load(string dataset, string? path, int seed)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        return dataset.Trim().ToLowerInvariant() switch
        {
            "cifar10" or "cifar-10" => Cifar10Reader.Load(path ?? "data"),
            "fashion-mnist" or "fashion_mnist" or "fashionmnist" => FashionMnistReader.Load(path ?? DefaultFashionMnistPath),
            "synthetic" => SyntheticDataset.Generate(seed),
            _ => throw new DataException($"Unknown dataset '{dataset}': expected one of {string.Join(", ", Names)}."),
        };
    }

    /// <summary>
    /// The dataset a <c>--data</c> path holds, for a user who gave no <c>--dataset</c>: a CIFAR-10
    /// binary folder or .tar.gz (or a folder holding either) is cifar10, a folder of Fashion-MNIST IDX
    /// files is fashion-mnist. Anything else is refused rather than guessed.
    /// </summary>
    /// <exception cref="DataException">The path is missing or holds neither format.</exception>
    public static string Detect(string path)
    {
        string full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            if (full.EndsWith(".tar.gz", StringComparison.OrdinalIgnoreCase) || full.EndsWith(".tgz", StringComparison.OrdinalIgnoreCase))
            {
                return "cifar10";
            }
            throw new DataException($"--data {path}: a file, but not a CIFAR-10 .tar.gz; say what it is with --dataset cifar10 or fashion-mnist.");
        }
        if (!Directory.Exists(full))
        {
            throw new DataException($"--data {path}: no such file or folder.");
        }
        bool Has(string name) => File.Exists(Path.Combine(full, name));
        if (Cifar10Reader.TrainFiles.Any(Has) || Has(Cifar10Reader.TestFile) || Has(Cifar10Reader.ArchiveName)
            || Directory.Exists(Path.Combine(full, Cifar10Reader.FolderName)))
        {
            return "cifar10";
        }
        if (Directory.EnumerateFiles(full).Select(Path.GetFileName).Any(f => f!.Contains("idx3-ubyte", StringComparison.Ordinal) || f.Contains("idx1-ubyte", StringComparison.Ordinal)))
        {
            return "fashion-mnist";
        }
        throw new DataException($"--data {path}: holds neither CIFAR-10 ({Cifar10Reader.FolderName}, {Cifar10Reader.ArchiveName}, data_batch_N.bin) nor Fashion-MNIST IDX files (*-idx3-ubyte[.gz]); say what it is with --dataset.");
    }
}
