using System.Buffers.Binary;
using System.Formats.Tar;
using System.IO.Compression;
using Engine.Runner.Data;
using Engine.Tests;

namespace Engine.Runner.Tests;

/// <summary>CIFAR-10 and Fashion-MNIST readers on tiny fake files written to a temporary folder.</summary>
public sealed class DataFilesTests : IDisposable
{
    private const int Record = 1 + 3072;
    private static readonly string[] TrainFiles = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];

    private readonly string _root = Directory.CreateTempSubdirectory("data-tests-").FullName;
    private readonly Random _rng = Numerics.NewRandom(out int _);

    public void Dispose() => Directory.Delete(_root, recursive: true);

    // ---- CIFAR-10 ----

    /// <summary>Random records for each of the six batch files; record counts differ per file.</summary>
    private Dictionary<string, byte[]> FakeCifarFiles()
    {
        var files = new Dictionary<string, byte[]>();
        int[] records = [3, 1, 2, 4, 2, 5];
        foreach (var (name, n) in TrainFiles.Append("test_batch.bin").Zip(records))
        {
            var data = new byte[n * Record];
            _rng.NextBytes(data);
            for (int r = 0; r < n; r++)
            {
                data[r * Record] = (byte)_rng.Next(10);
            }
            files[name] = data;
        }
        return files;
    }

    private static string WriteFolder(string folder, Dictionary<string, byte[]> files)
    {
        Directory.CreateDirectory(folder);
        foreach (var (name, data) in files)
        {
            File.WriteAllBytes(Path.Combine(folder, name), data);
        }
        return folder;
    }

    private static string WriteArchive(string path, Dictionary<string, byte[]> files)
    {
        using var stream = File.Create(path);
        using var gzip = new GZipStream(stream, CompressionLevel.Fastest);
        using var tar = new TarWriter(gzip, TarEntryFormat.Pax);
        tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "cifar-10-batches-bin/"));
        tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "cifar-10-batches-bin/batches.meta.txt") { DataStream = new MemoryStream("airplane\n"u8.ToArray()) });
        foreach (var (name, data) in files)
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "cifar-10-batches-bin/" + name) { DataStream = new MemoryStream(data) });
        }
        return path;
    }

    private static void AssertHolds(ImageDataset set, IEnumerable<byte[]> files)
    {
        byte[] all = files.SelectMany(f => f).ToArray();
        int n = all.Length / Record;
        Assert.Equal(n, set.Count);
        Assert.Equal(n * 3072, set.Images.Length);
        for (int r = 0; r < n; r++)
        {
            Assert.Equal(all[r * Record], set.Labels[r]);
            Assert.True(all.AsSpan(r * Record + 1, 3072).SequenceEqual(set.Image(r)), $"image {r} differs");
        }
    }

    private void AssertCifar(Dictionary<string, byte[]> files, (ImageDataset Train, ImageDataset Test) loaded)
    {
        AssertHolds(loaded.Train, TrainFiles.Select(f => files[f]));
        AssertHolds(loaded.Test, [files["test_batch.bin"]]);
        Assert.Equal([0.4914f, 0.4822f, 0.4465f], loaded.Train.Mean);
        Assert.Equal([0.2470f, 0.2435f, 0.2616f], loaded.Test.Std);
        Assert.Equal((3, 32, 32), (loaded.Train.Channels, loaded.Train.Height, loaded.Train.Width));
    }

    [Fact]
    public void Cifar_reads_the_batches_folder_and_a_folder_above_it()
    {
        var files = FakeCifarFiles();
        string folder = WriteFolder(Path.Combine(_root, "cifar-10-batches-bin"), files);
        AssertCifar(files, DatasetLoader.Load("cifar10", folder, seed: 0));
        AssertCifar(files, DatasetLoader.Load("cifar10", _root, seed: 0));
    }

    [Fact]
    public void Cifar_reads_the_tar_gz_directly_and_from_its_folder()
    {
        var files = FakeCifarFiles();
        string archive = WriteArchive(Path.Combine(_root, "cifar-10-binary.tar.gz"), files);
        AssertCifar(files, DatasetLoader.Load("cifar10", archive, seed: 0));
        AssertCifar(files, DatasetLoader.Load("CIFAR10", _root, seed: 0));
    }

    [Fact]
    public void Cifar_missing_path_lists_what_was_expected()
    {
        string path = Path.Combine(_root, "nowhere");
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("cifar10", path, 0));
        Assert.Contains(path, e.Message);
        Assert.Contains("cifar-10-batches-bin", e.Message);
        Assert.Contains("cifar-10-binary.tar.gz", e.Message);
    }

    [Fact]
    public void Cifar_folder_missing_a_batch_names_it()
    {
        var files = FakeCifarFiles();
        files.Remove("data_batch_4.bin");
        string folder = WriteFolder(Path.Combine(_root, "cifar-10-batches-bin"), files);
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("cifar10", folder, 0));
        Assert.Contains("lacks data_batch_4.bin", e.Message);
    }

    [Fact]
    public void Cifar_truncated_batch_reports_expected_and_actual_bytes()
    {
        var files = FakeCifarFiles();
        files["data_batch_3.bin"] = files["data_batch_3.bin"][..(Record + 100)];
        string folder = WriteFolder(Path.Combine(_root, "cifar-10-batches-bin"), files);
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("cifar10", folder, 0));
        Assert.Contains("data_batch_3.bin", e.Message);
        Assert.Contains($"{Record + 100} bytes", e.Message);
        Assert.Contains($"expected {2 * Record} bytes", e.Message);
    }

    [Fact]
    public void Cifar_label_out_of_range_names_file_and_record()
    {
        var files = FakeCifarFiles();
        files["test_batch.bin"][2 * Record] = 10;
        string folder = WriteFolder(Path.Combine(_root, "cifar-10-batches-bin"), files);
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("cifar10", folder, 0));
        Assert.Contains("test_batch.bin", e.Message);
        Assert.Contains("record 2 has label 10", e.Message);
    }

    [Fact]
    public void Cifar_truncated_or_incomplete_archive_is_reported()
    {
        var files = FakeCifarFiles();
        string archive = WriteArchive(Path.Combine(_root, "cifar-10-binary.tar.gz"), files);
        byte[] bytes = File.ReadAllBytes(archive);
        File.WriteAllBytes(archive, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("cifar10", archive, 0));
        Assert.Contains("cifar-10-binary.tar.gz", e.Message);

        files.Remove("test_batch.bin");
        WriteArchive(archive, files);
        e = Assert.Throws<DataException>(() => DatasetLoader.Load("cifar10", archive, 0));
        Assert.Contains("lacks test_batch.bin", e.Message);

        File.WriteAllBytes(archive, "not a gzip file"u8.ToArray());
        e = Assert.Throws<DataException>(() => DatasetLoader.Load("cifar10", archive, 0));
        Assert.Contains("cannot be read", e.Message);
    }

    // ---- Fashion-MNIST ----

    private static byte[] Idx(int magic, int[] dims, byte[] payload)
    {
        var data = new byte[4 + 4 * dims.Length + payload.Length];
        BinaryPrimitives.WriteInt32BigEndian(data, magic);
        for (int i = 0; i < dims.Length; i++)
        {
            BinaryPrimitives.WriteInt32BigEndian(data.AsSpan(4 + 4 * i), dims[i]);
        }
        payload.CopyTo(data, 4 + 4 * dims.Length);
        return data;
    }

    private static void WriteIdx(string path, byte[] data, bool gzip)
    {
        if (!gzip)
        {
            File.WriteAllBytes(path, data);
            return;
        }
        using var stream = File.Create(path + ".gz");
        using var z = new GZipStream(stream, CompressionLevel.Fastest);
        z.Write(data);
    }

    /// <summary>Writes a fake Fashion-MNIST folder; returns the raw 28x28 pixels and labels of train and test.</summary>
    private (byte[] Pixels, byte[] Labels)[] WriteFashion(string folder, bool gzip, int train = 5, int test = 3)
    {
        Directory.CreateDirectory(folder);
        var result = new (byte[], byte[])[2];
        foreach (var (split, n, k) in new[] { ("train", train, 0), ("t10k", test, 1) })
        {
            var pixels = new byte[n * 28 * 28];
            _rng.NextBytes(pixels);
            var labels = Enumerable.Range(0, n).Select(_ => (byte)_rng.Next(10)).ToArray();
            WriteIdx(Path.Combine(folder, $"{split}-images-idx3-ubyte"), Idx(0x803, [n, 28, 28], pixels), gzip);
            WriteIdx(Path.Combine(folder, $"{split}-labels-idx1-ubyte"), Idx(0x801, [n], labels), gzip);
            result[k] = (pixels, labels);
        }
        return result;
    }

    private static void AssertPadded(ImageDataset set, byte[] pixels, byte[] labels)
    {
        Assert.Equal(labels, set.Labels);
        Assert.Equal(labels.Length * 3 * 32 * 32, set.Images.Length);
        for (int n = 0; n < labels.Length; n++)
        {
            ReadOnlySpan<byte> image = set.Image(n);
            for (int c = 0; c < 3; c++)
            {
                for (int y = 0; y < 32; y++)
                {
                    for (int x = 0; x < 32; x++)
                    {
                        bool inside = y >= 2 && y < 30 && x >= 2 && x < 30;
                        byte expected = inside ? pixels[n * 784 + (y - 2) * 28 + (x - 2)] : (byte)0;
                        Assert.True(expected == image[c * 1024 + y * 32 + x], $"image {n} channel {c} ({y}, {x})");
                    }
                }
            }
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Fashion_pads_to_32x32_and_replicates_gray_to_3_channels(bool gzip)
    {
        var expected = WriteFashion(_root, gzip);
        var (train, test) = DatasetLoader.Load("fashion-mnist", _root, seed: 0);
        AssertPadded(train, expected[0].Pixels, expected[0].Labels);
        AssertPadded(test, expected[1].Pixels, expected[1].Labels);
        Assert.Equal([0.2860f, 0.2860f, 0.2860f], train.Mean);
        Assert.Equal([0.3530f, 0.3530f, 0.3530f], test.Std);
    }

    [Fact]
    public void Fashion_missing_folder_or_file_lists_what_was_expected()
    {
        string missing = Path.Combine(_root, "absent");
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("fashion-mnist", missing, 0));
        Assert.Contains(missing, e.Message);
        Assert.Contains("train-images-idx3-ubyte", e.Message);

        WriteFashion(_root, gzip: true);
        File.Delete(Path.Combine(_root, "t10k-labels-idx1-ubyte.gz"));
        e = Assert.Throws<DataException>(() => DatasetLoader.Load("fashion-mnist", _root, 0));
        Assert.Contains("t10k-labels-idx1-ubyte", e.Message);
    }

    [Fact]
    public void Fashion_wrong_magic_is_reported()
    {
        WriteFashion(_root, gzip: false);
        string labels = Path.Combine(_root, "train-labels-idx1-ubyte");
        byte[] data = File.ReadAllBytes(labels);
        BinaryPrimitives.WriteInt32BigEndian(data, 0x803);
        File.WriteAllBytes(labels, data);
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("fashion-mnist", _root, 0));
        Assert.Contains(labels, e.Message);
        Assert.Contains("0x00000803", e.Message);
        Assert.Contains("expected 0x00000801", e.Message);
    }

    [Fact]
    public void Fashion_truncated_images_report_expected_and_actual_bytes()
    {
        WriteFashion(_root, gzip: true, train: 4);
        string images = Path.Combine(_root, "train-images-idx3-ubyte");
        WriteIdx(images, Idx(0x803, [4, 28, 28], new byte[3 * 784 + 10]), gzip: true);
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("fashion-mnist", _root, 0));
        Assert.Contains("train-images-idx3-ubyte.gz", e.Message);
        Assert.Contains($"expected {16 + 4 * 784} bytes", e.Message);
        Assert.Contains($"got {16 + 3 * 784 + 10}", e.Message);
    }

    [Fact]
    public void Fashion_corrupt_gzip_is_reported()
    {
        WriteFashion(_root, gzip: true);
        string images = Path.Combine(_root, "t10k-images-idx3-ubyte.gz");
        byte[] data = File.ReadAllBytes(images);
        File.WriteAllBytes(images, data[..(data.Length / 2)]);
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("fashion-mnist", _root, 0));
        Assert.Contains("t10k-images-idx3-ubyte.gz", e.Message);
    }

    [Fact]
    public void Fashion_label_out_of_range_is_reported()
    {
        WriteFashion(_root, gzip: false, test: 3);
        string labels = Path.Combine(_root, "t10k-labels-idx1-ubyte");
        File.WriteAllBytes(labels, Idx(0x801, [3], [1, 2, 12]));
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("fashion-mnist", _root, 0));
        Assert.Contains(labels, e.Message);
        Assert.Contains("label 2 is 12", e.Message);
    }

    [Fact]
    public void Fashion_image_and_label_count_mismatch_is_reported()
    {
        WriteFashion(_root, gzip: true, train: 5);
        WriteIdx(Path.Combine(_root, "train-labels-idx1-ubyte"), Idx(0x801, [4], [1, 2, 3, 4]), gzip: true);
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("fashion-mnist", _root, 0));
        Assert.Contains("holds 5 images", e.Message);
        Assert.Contains("holds 4 labels", e.Message);
        Assert.Contains("train-labels-idx1-ubyte.gz", e.Message);
    }

    [Fact]
    public void Unknown_dataset_name_lists_the_known_ones()
    {
        var e = Assert.Throws<DataException>(() => DatasetLoader.Load("imagenet", null, 0));
        Assert.Contains("'imagenet'", e.Message);
        Assert.Contains("cifar10, fashion-mnist, synthetic", e.Message);
    }
}
