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
}
