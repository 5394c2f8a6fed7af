using System.Buffers.Binary;
using System.IO.Compression;

namespace Engine.Runner.Data;

/// <summary>
/// Fashion-MNIST in IDX files (big-endian header: magic 0x00000803 for images [n, rows, cols], 0x00000801 for
/// labels [n]), gzip or plain. Images (28x28 gray) are zero-padded to 32x32, centred, and the gray channel is
/// replicated to 3 channels, so the CIFAR-shaped pipeline and models take them unchanged.
/// </summary>
internal static class FashionMnistReader
{
    public const int ImagesMagic = 0x00000803;
    public const int LabelsMagic = 0x00000801;

    // Fashion-MNIST's training-set statistics, the same on each replicated channel.
    private static readonly float[] Mean = [0.2860f, 0.2860f, 0.2860f];
    private static readonly float[] Std = [0.3530f, 0.3530f, 0.3530f];

    private static readonly (string Images, string Labels)[] Splits =
    [
        ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ];

    public static (ImageDataset Train, ImageDataset Test) Load(string path)
    {
        string folder = Path.GetFullPath(path);
        var expected = Splits.SelectMany(s => new[] { s.Images, s.Labels }).Select(f => f + "[.gz]");
        if (!Directory.Exists(folder))
        {
            throw new DataException($"Fashion-MNIST folder '{folder}' not found: expected a folder with {string.Join(", ", expected)} (Debian: apt-get install dataset-fashion-mnist).");
        }
        var train = LoadSplit(folder, "fashion-mnist-train", Splits[0]);
        var test = LoadSplit(folder, "fashion-mnist-test", Splits[1]);
        return (train, test);
    }

    private static ImageDataset LoadSplit(string folder, string name, (string Images, string Labels) files)
    {
        string imagesFile = Find(folder, files.Images);
        string labelsFile = Find(folder, files.Labels);
        var (count, rows, cols, pixels) = ReadImages(imagesFile);
        byte[] labels = ReadLabels(labelsFile);
        if (labels.Length != count)
        {
            throw new DataException($"Fashion-MNIST: '{imagesFile}' holds {count} images but '{labelsFile}' holds {labels.Length} labels.");
        }
        return new ImageDataset { Name = name, Images = Pad(pixels, count, rows, cols), Labels = labels, Mean = Mean, Std = Std };
    }

    /// <summary>The file for an IDX name: gzip or plain, and the dotted spelling some mirrors use (train-images.idx3-ubyte).</summary>
    private static string Find(string folder, string stem)
    {
        string dotted = stem.Replace("-idx", ".idx", StringComparison.Ordinal);
        string[] candidates = [stem + ".gz", stem, dotted + ".gz", dotted];
        foreach (string c in candidates)
        {
            string p = Path.Combine(folder, c);
            if (File.Exists(p))
            {
                return p;
            }
        }
        throw new DataException($"Fashion-MNIST folder '{folder}' lacks '{stem}.gz' (or {string.Join(", ", candidates.Skip(1).Select(c => $"'{c}'"))}).");
    }

    private static (int Count, int Rows, int Cols, byte[] Pixels) ReadImages(string file)
    {
        byte[] data = ReadMaybeGzip(file);
        RequireHeader(file, data, 16, ImagesMagic, "images");
        int count = BinaryPrimitives.ReadInt32BigEndian(data.AsSpan(4));
        int rows = BinaryPrimitives.ReadInt32BigEndian(data.AsSpan(8));
        int cols = BinaryPrimitives.ReadInt32BigEndian(data.AsSpan(12));
        if (count < 0 || rows < 1 || rows > 32 || cols < 1 || cols > 32)
        {
            throw new DataException($"Fashion-MNIST file '{file}': header says {count} images of {rows}x{cols}; expected images of at most 32x32.");
        }
        RequireLength(file, data, 16 + (long)count * rows * cols, $"{count} images of {rows}x{cols}");
        return (count, rows, cols, data[16..]);
    }

    private static byte[] ReadLabels(string file)
    {
        byte[] data = ReadMaybeGzip(file);
        RequireHeader(file, data, 8, LabelsMagic, "labels");
        int count = BinaryPrimitives.ReadInt32BigEndian(data.AsSpan(4));
        if (count < 0)
        {
            throw new DataException($"Fashion-MNIST file '{file}': header says {count} labels.");
        }
        RequireLength(file, data, 8 + (long)count, $"{count} labels");
        byte[] labels = data.AsSpan(8, count).ToArray();
        int bad = Array.FindIndex(labels, l => l >= ImageDataset.Classes);
        if (bad >= 0)
        {
            throw new DataException($"Fashion-MNIST file '{file}': label {bad} is {labels[bad]}, outside 0..{ImageDataset.Classes - 1}.");
        }
        return labels;
    }

    private static void RequireHeader(string file, byte[] data, int headerBytes, int magic, string what)
    {
        if (data.Length < headerBytes)
        {
            throw new DataException($"Fashion-MNIST file '{file}' is truncated: {data.Length} bytes, expected at least the {headerBytes}-byte IDX header.");
        }
        int actual = BinaryPrimitives.ReadInt32BigEndian(data);
        if (actual != magic)
        {
            throw new DataException($"Fashion-MNIST file '{file}': IDX magic number 0x{actual:X8}, expected 0x{magic:X8} for {what}.");
        }
    }

    private static void RequireLength(string file, byte[] data, long expected, string what)
    {
        if (data.Length != expected)
        {
            throw new DataException($"Fashion-MNIST file '{file}' is {(data.Length < expected ? "truncated" : "too long")}: expected {expected} bytes for {what}, got {data.Length}.");
        }
    }

    /// <summary>The file's bytes, decompressed when it starts with the gzip magic (whatever its name says).</summary>
    private static byte[] ReadMaybeGzip(string file)
    {
        try
        {
            using var stream = File.OpenRead(file);
            bool gzip = stream.ReadByte() == 0x1F && stream.ReadByte() == 0x8B;
            stream.Position = 0;
            if (!gzip)
            {
                return File.ReadAllBytes(file);
            }
            using var decompressed = new GZipStream(stream, CompressionMode.Decompress);
            using var memory = new MemoryStream();
            decompressed.CopyTo(memory);
            return memory.ToArray();
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw new DataException($"Fashion-MNIST file '{file}' cannot be read (truncated or corrupt gzip?): {e.Message}", e);
        }
    }

    /// <summary>Centres each rows x cols gray image in a zero 32x32 frame and copies it to the 3 channels.</summary>
    private static byte[] Pad(byte[] pixels, int count, int rows, int cols)
    {
        const int Side = 32, Plane = Side * Side, Image = 3 * Plane;
        int top = (Side - rows) / 2, left = (Side - cols) / 2;
        var images = new byte[(long)count * Image];
        Parallel.For(0, count, n =>
        {
            Span<byte> image = images.AsSpan(n * Image, Image);
            for (int y = 0; y < rows; y++)
            {
                ReadOnlySpan<byte> row = pixels.AsSpan((n * rows + y) * cols, cols);
                for (int c = 0; c < 3; c++)
                {
                    row.CopyTo(image.Slice(c * Plane + (top + y) * Side + left, cols));
                }
            }
        });
        return images;
    }
}
