using System.Text;
using Engine.Nn.Checkpoints;
using Engine.Tests;

namespace Engine.Nn.Tests;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("safetensors-tests-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string PathOf(string name) => Path.Combine(_folder, name);

    [Fact]
    public void Round_trip_keeps_every_dtype_shape_order_and_metadata()
    {
        var rng = Numerics.NewRandom(out int seed);
        float[] weights = Numerics.Uniform(rng, 2 * 3 * 5);
        var counts = new long[] { long.MaxValue, -1, 0, 42 };
        var doubles = new[] { Math.PI, -0.0, double.Epsilon };
        var ints = new[] { int.MinValue, 7 };
        var bytes = new byte[] { 0, 255, 128 };
        var tensors = new[]
        {
            SafeTensor.FromFloats("layer.weight", [2, 3, 5], weights),
            SafeTensor.FromInt64("counts", [2, 2], counts),
            SafeTensor.FromFloats("loss", [], [1.5f]),
            SafeTensor.FromDoubles("d", [3], doubles),
            SafeTensor.FromInt32("i", [2], ints),
            SafeTensor.FromBytes("u", [3], bytes),
            SafeTensor.FromFloats("empty", [0, 4], []),
        };
        var metadata = new Dictionary<string, string> { ["epoch"] = "3", ["note"] = "ünïcode \"quoted\"" };
        string path = PathOf("model.safetensors");

        SafeTensors.Write(path, tensors, metadata);
        var (read, meta) = SafeTensors.Read(path);

        Assert.Equal(tensors.Select(t => t.Name), read.Keys);
        foreach (SafeTensor t in tensors)
        {
            SafeTensor r = read[t.Name];
            Assert.Equal(t.DType, r.DType);
            Assert.Equal(t.Shape, r.Shape);
            Assert.Equal(t.Data, r.Data);
        }
        Assert.Equal(weights, read["layer.weight"].ToFloats());
        Assert.Equal(counts, read["counts"].ToInt64());
        Assert.Equal(doubles, read["d"].ToDoubles());
        Assert.Equal(ints, read["i"].ToInt32());
        Assert.Equal([1.5f], read["loss"].ToFloats());
        Assert.Equal(metadata, meta);

        // The data section starts 8-byte aligned, as the safetensors package writes it.
        byte[] file = File.ReadAllBytes(path);
        Assert.True(BitConverter.ToInt64(file, 0) % 8 == 0, $"header length {BitConverter.ToInt64(file, 0)} (seed {seed})");
    }

    [Fact]
    public void Reads_a_file_laid_out_like_the_safetensors_package()
    {
        // Header keys in an order unlike the data order, sorted offsets, padding spaces, metadata last.
        float[] a = [1f, -2f, 3.25f, float.MaxValue];
        long[] b = [5, -6];
        byte[] data = [.. BitConverter.GetBytes(b[0]), .. BitConverter.GetBytes(b[1]), .. a.SelectMany(BitConverter.GetBytes)];
        string json = "{\"z.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]}," +
                      "\"a.steps\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},\"__metadata__\":{\"format\":\"pt\"}}";
        json += new string(' ', (8 - json.Length % 8) % 8);
        string path = PathOf("torch.safetensors");
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)json.Length), .. Encoding.UTF8.GetBytes(json), .. data]);

        var (tensors, metadata) = SafeTensors.Read(path);

        Assert.Equal(["a.steps", "z.weight"], tensors.Keys);
        Assert.Equal(a, tensors["z.weight"].ToFloats());
        Assert.Equal([2L, 2L], tensors["z.weight"].Shape);
        Assert.Equal(b, tensors["a.steps"].ToInt64());
        Assert.Equal("pt", metadata["format"]);
    }

    [Fact]
    public void Write_replaces_an_existing_file()
    {
        string path = PathOf("w.safetensors");
        SafeTensors.Write(path, [SafeTensor.FromFloats("x", [1], [1f])]);
        SafeTensors.Write(path, [SafeTensor.FromFloats("y", [2], [2f, 3f])]);
        var (tensors, metadata) = SafeTensors.Read(path);
        Assert.Equal(["y"], tensors.Keys);
        Assert.Empty(metadata);
        Assert.Single(Directory.GetFiles(_folder));
    }

    [Fact]
    public void A_failed_write_leaves_the_old_file_intact_and_no_temporary_file()
    {
        string path = PathOf("atomic.safetensors");
        SafeTensors.Write(path, [SafeTensor.FromFloats("old", [3], [1f, 2f, 3f])]);
        byte[] before = File.ReadAllBytes(path);

        static IEnumerable<SafeTensor> ThrowsMidway()
        {
            yield return SafeTensor.FromFloats("new", [1], [9f]);
            throw new InvalidOperationException("producer failed");
        }
        var thrown = Assert.Throws<InvalidOperationException>(() => SafeTensors.Write(path, ThrowsMidway()));
        Assert.Equal("producer failed", thrown.Message);

        // A tensor whose bytes do not match its shape is refused before anything is written.
        var bad = new SafeTensor("bad", "F32", [4], new byte[12]);
        var e = Assert.Throws<CheckpointException>(() => SafeTensors.Write(path, [SafeTensor.FromFloats("ok", [1], [1f]), bad]));
        Assert.Contains("'bad'", e.Message);
        Assert.Contains("atomic.safetensors", e.Message);

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(_folder));
        Assert.Equal([1f, 2f, 3f], SafeTensors.Read(path).Tensors["old"].ToFloats());
    }

    [Fact]
    public void Write_rejects_duplicate_names_and_unknown_dtypes()
    {
        string path = PathOf("dup.safetensors");
        var dup = Assert.Throws<CheckpointException>(() => SafeTensors.Write(path, [SafeTensor.FromFloats("x", [1], [1f]), SafeTensor.FromFloats("x", [1], [2f])]));
        Assert.Contains("'x'", dup.Message);
        var dtype = Assert.Throws<CheckpointException>(() => SafeTensors.Write(path, [new SafeTensor("h", "F16", [1], new byte[2])]));
        Assert.Contains("F16", dtype.Message);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Helpers_check_counts_and_dtypes()
    {
        Assert.Throws<ArgumentException>(() => SafeTensor.FromFloats("x", [2, 2], [1f, 2f, 3f]));
        Assert.Throws<InvalidOperationException>(() => SafeTensor.FromInt64("n", [1], [1L]).ToFloats());
    }

    [Fact]
    public void Missing_file_is_named()
    {
        string path = PathOf("absent.safetensors");
        var e = Assert.Throws<CheckpointException>(() => SafeTensors.Read(path));
        Assert.Contains("absent.safetensors", e.Message);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Header_length_beyond_the_file_is_reported()
    {
        string path = PathOf("short.safetensors");
        File.WriteAllBytes(path, [.. BitConverter.GetBytes(1000UL), .. "{}"u8.ToArray()]);
        var e = Assert.Throws<CheckpointException>(() => SafeTensors.Read(path));
        Assert.Contains("short.safetensors", e.Message);
        Assert.Contains("1000", e.Message);

        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Contains("too short", Assert.Throws<CheckpointException>(() => SafeTensors.Read(path)).Message);
    }

    [Theory]
    [InlineData("{\"x\":{\"dtype\":\"F32\",", "not valid JSON")]
    [InlineData("[1,2]", "not an object")]
    [InlineData("{\"x\":{\"dtype\":\"Q9\",\"shape\":[1],\"data_offsets\":[0,4]}}", "'x': dtype 'Q9'")]
    [InlineData("{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "'x': missing array 'shape'")]
    [InlineData("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", "'x': data_offsets [4, 0]")]
    [InlineData("{\"__metadata__\":{\"a\":1}}", "entry 'a'")]
    public void Bad_headers_are_reported(string json, string expected)
    {
        string path = PathOf("bad.safetensors");
        WriteRaw(path, json, new byte[8]);
        var e = Assert.Throws<CheckpointException>(() => SafeTensors.Read(path));
        Assert.Contains("bad.safetensors", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Offsets_beyond_the_data_are_reported()
    {
        string path = PathOf("truncated.safetensors");
        SafeTensors.Write(path, [SafeTensor.FromFloats("a", [4], [1f, 2f, 3f, 4f]), SafeTensor.FromFloats("b", [2], [5f, 6f])]);
        byte[] full = File.ReadAllBytes(path);
        File.WriteAllBytes(path, full[..^3]);
        var e = Assert.Throws<CheckpointException>(() => SafeTensors.Read(path));
        Assert.Contains("truncated.safetensors", e.Message);
        Assert.Contains("'b'", e.Message);
        Assert.Contains("beyond the data section", e.Message);
    }

    [Fact]
    public void Overlapping_tensors_are_reported()
    {
        string path = PathOf("overlap.safetensors");
        WriteRaw(path, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", new byte[12]);
        var e = Assert.Throws<CheckpointException>(() => SafeTensors.Read(path));
        Assert.Contains("overlap.safetensors", e.Message);
        Assert.Contains("'b'", e.Message);
        Assert.Contains("overlaps tensor 'a'", e.Message);
    }

    [Fact]
    public void Data_length_not_matching_dtype_and_shape_is_reported()
    {
        string path = PathOf("size.safetensors");
        WriteRaw(path, "{\"w\":{\"dtype\":\"I64\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", new byte[24]);
        var e = Assert.Throws<CheckpointException>(() => SafeTensors.Read(path));
        Assert.Contains("size.safetensors", e.Message);
        Assert.Contains("'w'", e.Message);
        Assert.Contains("needs 48 bytes", e.Message);
    }

    private static void WriteRaw(string path, string json, byte[] data)
    {
        byte[] header = Encoding.UTF8.GetBytes(json);
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)header.Length), .. header, .. data]);
    }
}
