namespace Engine.Runner.Data;

/// <summary>
/// A labelled image set held on the host as CIFAR-10's binary keeps it: uint8 images
/// [count, channels, height, width] (CHW per image) and one label byte (0..9) per image.
/// Normalisation (per channel, on the device) uses <see cref="Mean"/> and <see cref="Std"/>, in [0, 1] units.
/// </summary>
public sealed class ImageDataset
{
    public const int Classes = 10;

    public required string Name { get; init; }
    public int Channels { get; init; } = 3;
    public int Height { get; init; } = 32;
    public int Width { get; init; } = 32;
    public required byte[] Images { get; init; }
    public required byte[] Labels { get; init; }
    public required float[] Mean { get; init; }
    public required float[] Std { get; init; }

    public int Count => Labels.Length;

    /// <summary>Bytes of one image (channels x height x width).</summary>
    public int ImageBytes => Channels * Height * Width;

    /// <summary>The image bytes of sample <paramref name="index"/>.</summary>
    public ReadOnlySpan<byte> Image(int index) => Images.AsSpan(index * ImageBytes, ImageBytes);

    /// <summary>The first <paramref name="limit"/> samples (for --train-limit / --test-limit); itself when limit &gt;= Count.</summary>
    public ImageDataset Take(int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        if (limit >= Count)
        {
            return this;
        }
        return new ImageDataset
        {
            Name = Name,
            Channels = Channels,
            Height = Height,
            Width = Width,
            Images = Images.AsSpan(0, limit * ImageBytes).ToArray(),
            Labels = Labels.AsSpan(0, limit).ToArray(),
            Mean = Mean,
            Std = Std,
        };
    }

    /// <summary>
    /// Copies the samples named by <paramref name="indices"/> into one contiguous batch
    /// ([indices.Length, C, H, W] image bytes and one label each), ready to upload in one transfer.
    /// </summary>
    public void CopyBatch(ReadOnlySpan<int> indices, Span<byte> images, Span<byte> labels)
    {
        int size = ImageBytes;
        if (images.Length < indices.Length * size || labels.Length < indices.Length)
        {
            throw new ArgumentException($"CopyBatch: a batch of {indices.Length} needs {indices.Length * size} image bytes and {indices.Length} labels; got {images.Length} and {labels.Length}.");
        }
        for (int i = 0; i < indices.Length; i++)
        {
            int index = indices[i];
            if ((uint)index >= (uint)Count)
            {
                throw new ArgumentOutOfRangeException(nameof(indices), $"CopyBatch: index {index} at position {i} is outside the {Count} samples of '{Name}'.");
            }
            Images.AsSpan(index * size, size).CopyTo(images.Slice(i * size, size));
            labels[i] = Labels[index];
        }
    }

    /// <summary>As <see cref="CopyBatch"/>, into new arrays.</summary>
    public (byte[] Images, byte[] Labels) GatherBatch(ReadOnlySpan<int> indices)
    {
        var images = new byte[indices.Length * ImageBytes];
        var labels = new byte[indices.Length];
        CopyBatch(indices, images, labels);
        return (images, labels);
    }

    /// <summary>Number of samples of each class.</summary>
    public int[] ClassCounts()
    {
        var counts = new int[Classes];
        foreach (byte label in Labels)
        {
            counts[label]++;
        }
        return counts;
    }
}
