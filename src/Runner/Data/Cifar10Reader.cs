using System.Formats.Tar;
using System.IO.Compression;

namespace Engine.Runner.Data;

/// <summary>
/// CIFAR-10's binary version: records of 1 label byte + 3072 pixel bytes (1024 red, 1024 green, 1024 blue,
/// rows of 32), 10,000 records per file; data_batch_1..5.bin are the training set, test_batch.bin the test set.
/// </summary>
internal static class Cifar10Reader
{
    public const int RecordBytes = 1 + ImageBytes;
    private const int ImageBytes = 3 * 32 * 32;
    public const string FolderName = "cifar-10-batches-bin";
    public const string ArchiveName = "cifar-10-binary.tar.gz";
    public static readonly string[] TrainFiles = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
    public const string TestFile = "test_batch.bin";

    // torchvision's CIFAR-10 statistics (the seed's Normalize), in [0, 1] units.
    private static readonly float[] Mean = [0.4914f, 0.4822f, 0.4465f];
    private static readonly float[] Std = [0.2470f, 0.2435f, 0.2616f];

    public static (ImageDataset Train, ImageDataset Test) Load(string path)
    {
        string full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            return LoadArchive(full);
        }
        if (Directory.Exists(full))
        {
            if (File.Exists(Path.Combine(full, TrainFiles[0])) || File.Exists(Path.Combine(full, TestFile)))
            {
                return LoadFolder(full);
            }
            if (Directory.Exists(Path.Combine(full, FolderName)))
            {
                return LoadFolder(Path.Combine(full, FolderName));
            }
            if (File.Exists(Path.Combine(full, ArchiveName)))
            {
                return LoadArchive(Path.Combine(full, ArchiveName));
            }
        }
        throw new DataException(
            $"CIFAR-10 not found at '{full}': expected the '{FolderName}' folder ({string.Join(", ", TrainFiles)}, {TestFile}), " +
            $"the '{ArchiveName}' archive, or a folder containing either (https://www.cs.toronto.edu/~kriz/cifar.html, binary version).");
    }

    private static (ImageDataset, ImageDataset) LoadFolder(string folder)
    {
        var missing = TrainFiles.Append(TestFile).Where(f => !File.Exists(Path.Combine(folder, f))).ToList();
        if (missing.Count > 0)
        {
            throw new DataException($"CIFAR-10 folder '{folder}' lacks {string.Join(", ", missing)} (expected {string.Join(", ", TrainFiles)}, {TestFile}).");
        }
        var train = TrainFiles.Select(f => (Path.Combine(folder, f), File.ReadAllBytes(Path.Combine(folder, f)))).ToList();
        string test = Path.Combine(folder, TestFile);
        return (Build("cifar10-train", train), Build("cifar10-test", [(test, File.ReadAllBytes(test))]));
    }

    /// <summary>Reads the .tar.gz in one pass through a GZipStream, without extracting it to disk.</summary>
    private static (ImageDataset, ImageDataset) LoadArchive(string archive)
    {
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        try
        {
            using var stream = File.OpenRead(archive);
            using var gzip = new GZipStream(stream, CompressionMode.Decompress);
            using var tar = new TarReader(gzip);
            while (tar.GetNextEntry() is { } entry)
            {
                string name = Path.GetFileName(entry.Name.TrimEnd('/'));
                if (entry.DataStream is null || !(TrainFiles.Contains(name) || name == TestFile))
                {
                    continue;
                }
                if (entry.Length > Array.MaxLength)
                {
                    throw new DataException($"CIFAR-10 archive '{archive}': entry '{entry.Name}' is {entry.Length} bytes, too large for a batch file.");
                }
                var data = new byte[entry.Length];
                int read = ReadFully(entry.DataStream, data);
                if (read != data.Length)
                {
                    throw new DataException($"CIFAR-10 archive '{archive}' is truncated: entry '{entry.Name}' should hold {data.Length} bytes, only {read} could be read.");
                }
                files[name] = data;
            }
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or FormatException or IOException)
        {
            throw new DataException($"CIFAR-10 archive '{archive}' cannot be read (truncated or not a .tar.gz?): {e.Message}", e);
        }
        var missing = TrainFiles.Append(TestFile).Where(f => !files.ContainsKey(f)).ToList();
        if (missing.Count > 0)
        {
            throw new DataException($"CIFAR-10 archive '{archive}' lacks {string.Join(", ", missing)} (expected {FolderName}/{{{string.Join(", ", TrainFiles)}, {TestFile}}}).");
        }
        string Where(string f) => $"{archive}:{FolderName}/{f}";
        return (Build("cifar10-train", TrainFiles.Select(f => (Where(f), files[f])).ToList()),
                Build("cifar10-test", [(Where(TestFile), files[TestFile])]));
    }

    private static int ReadFully(Stream stream, byte[] buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer, total, buffer.Length - total);
            if (n == 0)
            {
                break;
            }
            total += n;
        }
        return total;
    }

    /// <summary>Splits the records of each file into labels and images, checking sizes and labels.</summary>
    private static ImageDataset Build(string name, List<(string File, byte[] Data)> files)
    {
        int count = 0;
        foreach (var (file, data) in files)
        {
            if (data.Length == 0 || data.Length % RecordBytes != 0)
            {
                int records = Math.Max(1, (data.Length + RecordBytes - 1) / RecordBytes);
                throw new DataException(
                    $"CIFAR-10 file '{file}' is truncated or malformed: {data.Length} bytes is not a whole number of {RecordBytes}-byte records " +
                    $"(1 label + {ImageBytes} pixels); expected {records * RecordBytes} bytes for {records} records (a full batch file is {10000 * RecordBytes}).");
            }
            count += data.Length / RecordBytes;
        }
        var images = new byte[(long)count * ImageBytes];
        var labels = new byte[count];
        int n = 0;
        foreach (var (file, data) in files)
        {
            for (int r = 0; r < data.Length / RecordBytes; r++, n++)
            {
                byte label = data[r * RecordBytes];
                if (label >= ImageDataset.Classes)
                {
                    throw new DataException($"CIFAR-10 file '{file}': record {r} has label {label}, outside 0..{ImageDataset.Classes - 1}.");
                }
                labels[n] = label;
                data.AsSpan(r * RecordBytes + 1, ImageBytes).CopyTo(images.AsSpan(n * ImageBytes, ImageBytes));
            }
        }
        return new ImageDataset { Name = name, Images = images, Labels = labels, Mean = Mean, Std = Std };
    }
}
