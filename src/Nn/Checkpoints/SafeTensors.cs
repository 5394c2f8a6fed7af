using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace Engine.Nn.Checkpoints;

/// <summary>A checkpoint file that cannot be read or written; the message names the file and, where one is at fault, the tensor.</summary>
public sealed class CheckpointException : Exception
{
    public CheckpointException(string message) : base(message) { }
    public CheckpointException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// One named tensor of a safetensors file: its dtype (<c>F32</c>, <c>F64</c>, <c>I64</c>, <c>I32</c>, <c>U8</c>),
/// its shape (empty for a scalar) and its raw little-endian bytes.
/// </summary>
public sealed record SafeTensor(string Name, string DType, long[] Shape, byte[] Data)
{
    /// <summary>Number of elements: the product of the shape (1 for a scalar).</summary>
    public long ElementCount => SafeTensors.ElementCount(Shape);

    public static SafeTensor FromFloats(string name, long[] shape, ReadOnlySpan<float> values) => From(name, "F32", shape, values);
    public static SafeTensor FromInt64(string name, long[] shape, ReadOnlySpan<long> values) => From(name, "I64", shape, values);
    public static SafeTensor FromDoubles(string name, long[] shape, ReadOnlySpan<double> values) => From(name, "F64", shape, values);
    public static SafeTensor FromInt32(string name, long[] shape, ReadOnlySpan<int> values) => From(name, "I32", shape, values);
    public static SafeTensor FromBytes(string name, long[] shape, ReadOnlySpan<byte> values) => From(name, "U8", shape, values);

    public float[] ToFloats() => To<float>("F32");
    public long[] ToInt64() => To<long>("I64");
    public double[] ToDoubles() => To<double>("F64");
    public int[] ToInt32() => To<int>("I32");

    private static SafeTensor From<T>(string name, string dtype, long[] shape, ReadOnlySpan<T> values) where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        long count = SafeTensors.ElementCount(shape);
        if (count != values.Length)
        {
            throw new ArgumentException($"Tensor '{name}': shape [{string.Join(", ", shape)}] holds {count} elements but {values.Length} values were given.");
        }
        SafeTensors.RequireLittleEndian();
        return new SafeTensor(name, dtype, (long[])shape.Clone(), MemoryMarshal.AsBytes(values).ToArray());
    }

    private T[] To<T>(string dtype) where T : unmanaged
    {
        if (DType != dtype)
        {
            throw new InvalidOperationException($"Tensor '{Name}' has dtype {DType}, not {dtype}.");
        }
        if (Data.Length != ElementCount * Unsafe.SizeOf<T>())
        {
            throw new InvalidOperationException($"Tensor '{Name}': {DType} [{string.Join(", ", Shape)}] needs {ElementCount * Unsafe.SizeOf<T>()} bytes but holds {Data.Length}.");
        }
        SafeTensors.RequireLittleEndian();
        return MemoryMarshal.Cast<byte, T>(Data).ToArray();
    }
}

/// <summary>
/// Reads and writes the safetensors format (as PyTorch's <c>safetensors</c> package does): an 8-byte
/// little-endian header length N, N bytes of JSON <c>{name: {dtype, shape, data_offsets: [begin, end]},
/// "__metadata__": {str: str}}</c> (padded with spaces to a multiple of 8 bytes), then the tensors'
/// raw little-endian bytes, offsets counted from the end of the header.
/// </summary>
public static class SafeTensors
{
    private const string MetadataKey = "__metadata__";

    /// <summary>Headers larger than this are refused, as the reference implementation does (100 MB).</summary>
    private const long MaxHeaderBytes = 100_000_000;

    /// <summary>Bytes per element of every dtype this engine reads and writes.</summary>
    public static int DTypeSize(string dtype) => dtype switch
    {
        "F32" or "I32" => 4,
        "F64" or "I64" => 8,
        "U8" => 1,
        _ => 0,
    };

    /// <summary>
    /// Writes <paramref name="tensors"/> in the order given, atomically: the bytes go to a temporary file
    /// in the same folder, are flushed to disk, and the file is then renamed over <paramref name="path"/>,
    /// so a reader (or a crash) sees either the old file or the complete new one.
    /// </summary>
    public static void Write(string path, IEnumerable<SafeTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        string temp = WriteTemporary(path, tensors, metadata);
        try
        {
            File.Move(temp, Path.GetFullPath(path), overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new CheckpointException($"Checkpoint '{Path.GetFullPath(path)}': write failed: {e.Message}", e);
        }
    }

    /// <summary>The name pattern of <see cref="WriteTemporary"/>'s files for <paramref name="path"/> (for removing those a crash left behind).</summary>
    public static string TemporaryPattern(string path) => $".{Path.GetFileName(Path.GetFullPath(path))}.*.tmp";

    /// <summary>
    /// The first half of <see cref="Write"/>: the complete file, flushed to disk, under a temporary name
    /// beside <paramref name="path"/> (see <see cref="TemporaryPattern"/>); the caller renames it into
    /// place. Lets a caller make several files visible in an order of its choosing.
    /// </summary>
    public static string WriteTemporary(string path, IEnumerable<SafeTensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        string full = Path.GetFullPath(path);
        // Materialise (and check) everything before touching the disk: a failure here leaves no trace.
        List<SafeTensor> list = tensors.ToList();
        byte[] header = BuildHeader(full, list, metadata);

        string folder = Path.GetDirectoryName(full) ?? ".";
        if (!Directory.Exists(folder))
        {
            throw new CheckpointException($"Checkpoint '{full}': folder '{folder}' does not exist.");
        }
        string temp = Path.Combine(folder, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> length = stackalloc byte[8];
                BitConverter.TryWriteBytes(length, (ulong)header.Length);
                RequireLittleEndian();
                stream.Write(length);
                stream.Write(header);
                foreach (SafeTensor t in list)
                {
                    stream.Write(t.Data);
                }
                stream.Flush(flushToDisk: true);
            }
            return temp;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new CheckpointException($"Checkpoint '{full}': write failed: {e.Message}", e);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>Only the metadata of a safetensors file (its header, not the tensors' bytes).</summary>
    public static IReadOnlyDictionary<string, string> ReadMetadata(string path)
    {
        string full = Path.GetFullPath(path);
        try
        {
            using SafeFileHandle file = File.OpenHandle(full, FileMode.Open, FileAccess.Read, FileShare.Read);
            long fileLength = RandomAccess.GetLength(file);
            Span<byte> lengthBytes = stackalloc byte[8];
            if (fileLength < 8) throw new CheckpointException($"Checkpoint '{full}': {fileLength} bytes is too short for the 8-byte header length.");
            ReadExactly(file, lengthBytes, 0);
            RequireLittleEndian();
            ulong headerLength = BitConverter.ToUInt64(lengthBytes);
            if (headerLength > (ulong)(fileLength - 8) || (long)headerLength > MaxHeaderBytes)
            {
                throw new CheckpointException($"Checkpoint '{full}': header length {headerLength} bytes does not fit the file ({fileLength} bytes).");
            }
            var header = new byte[headerLength];
            ReadExactly(file, header, 8);
            using JsonDocument document = JsonDocument.Parse(header);
            var metadata = new Dictionary<string, string>();
            if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty(MetadataKey, out JsonElement m) && m.ValueKind == JsonValueKind.Object)
            {
                foreach (JsonProperty p in m.EnumerateObject())
                {
                    if (p.Value.ValueKind == JsonValueKind.String) metadata[p.Name] = p.Value.GetString()!;
                }
            }
            return metadata;
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"Checkpoint '{full}': header is not valid JSON: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"Checkpoint '{full}': read failed: {e.Message}", e);
        }
    }

    /// <summary>Reads every tensor (in the order of their bytes in the file) and the metadata of a safetensors file.</summary>
    public static (IReadOnlyDictionary<string, SafeTensor> Tensors, IReadOnlyDictionary<string, string> Metadata) Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string full = Path.GetFullPath(path);
        if (!File.Exists(full))
        {
            throw new CheckpointException($"Checkpoint '{full}' not found.");
        }
        try
        {
            using SafeFileHandle file = File.OpenHandle(full, FileMode.Open, FileAccess.Read, FileShare.Read);
            return Read(full, file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"Checkpoint '{full}': read failed: {e.Message}", e);
        }
    }

    private static (IReadOnlyDictionary<string, SafeTensor>, IReadOnlyDictionary<string, string>) Read(string path, SafeFileHandle file)
    {
        long fileLength = RandomAccess.GetLength(file);
        if (fileLength < 8)
        {
            throw new CheckpointException($"Checkpoint '{path}': {fileLength} bytes is too short for the 8-byte header length.");
        }
        Span<byte> lengthBytes = stackalloc byte[8];
        ReadExactly(file, lengthBytes, 0);
        RequireLittleEndian();
        ulong headerLength = BitConverter.ToUInt64(lengthBytes);
        if (headerLength > (ulong)(fileLength - 8))
        {
            throw new CheckpointException($"Checkpoint '{path}': header length {headerLength} bytes goes beyond the file ({fileLength} bytes, {fileLength - 8} after the length field).");
        }
        if ((long)headerLength > MaxHeaderBytes)
        {
            throw new CheckpointException($"Checkpoint '{path}': header length {headerLength} bytes exceeds the {MaxHeaderBytes}-byte limit.");
        }
        var header = new byte[headerLength];
        ReadExactly(file, header, 8);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        var entries = new List<(string Name, string DType, long[] Shape, long Begin, long End)>();
        var metadata = new OrderedDictionary<string, string>();
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"Checkpoint '{path}': header is not valid JSON: {e.Message}", e);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointException($"Checkpoint '{path}': header is a JSON {document.RootElement.ValueKind}, not an object.");
            }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty property in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name))
                {
                    throw new CheckpointException($"Checkpoint '{path}': tensor '{property.Name}' appears twice in the header.");
                }
                if (property.Name == MetadataKey)
                {
                    ReadMetadata(path, property.Value, metadata);
                }
                else
                {
                    entries.Add(ReadEntry(path, property.Name, property.Value));
                }
            }
        }

        // Check every range against the data section, then against each other in file order.
        foreach (var e in entries)
        {
            if (e.End > dataLength)
            {
                throw new CheckpointException($"Checkpoint '{path}': tensor '{e.Name}' data_offsets [{e.Begin}, {e.End}] go beyond the data section ({dataLength} bytes; file truncated?).");
            }
            long expected;
            try
            {
                expected = checked(ElementCount(e.Shape) * DTypeSize(e.DType));
            }
            catch (OverflowException)
            {
                throw new CheckpointException($"Checkpoint '{path}': tensor '{e.Name}' shape [{string.Join(", ", e.Shape)}] is too large.");
            }
            if (e.End - e.Begin != expected)
            {
                throw new CheckpointException($"Checkpoint '{path}': tensor '{e.Name}' ({e.DType} [{string.Join(", ", e.Shape)}]) needs {expected} bytes but data_offsets [{e.Begin}, {e.End}] hold {e.End - e.Begin}.");
            }
        }
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        for (int i = 1; i < entries.Count; i++)
        {
            var (previous, current) = (entries[i - 1], entries[i]);
            if (current.Begin < previous.End)
            {
                throw new CheckpointException($"Checkpoint '{path}': tensor '{current.Name}' [{current.Begin}, {current.End}] overlaps tensor '{previous.Name}' [{previous.Begin}, {previous.End}].");
            }
        }

        var tensors = new OrderedDictionary<string, SafeTensor>(entries.Count, StringComparer.Ordinal);
        foreach (var e in entries)
        {
            var data = new byte[e.End - e.Begin];
            ReadExactly(file, data, dataStart + e.Begin);
            tensors.Add(e.Name, new SafeTensor(e.Name, e.DType, e.Shape, data));
        }
        return (tensors, metadata);
    }

    private static void ReadMetadata(string path, JsonElement value, OrderedDictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new CheckpointException($"Checkpoint '{path}': {MetadataKey} is a JSON {value.ValueKind}, not an object of strings.");
        }
        foreach (JsonProperty item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw new CheckpointException($"Checkpoint '{path}': {MetadataKey} entry '{item.Name}' is a JSON {item.Value.ValueKind}, not a string.");
            }
            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    private static (string Name, string DType, long[] Shape, long Begin, long End) ReadEntry(string path, string name, JsonElement value)
    {
        string where = $"Checkpoint '{path}': tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new CheckpointException($"{where}: header entry is a JSON {value.ValueKind}, not an object.");
        }
        if (!value.TryGetProperty("dtype", out JsonElement dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw new CheckpointException($"{where}: missing string 'dtype'.");
        }
        string dtype = dtypeElement.GetString()!;
        if (DTypeSize(dtype) == 0)
        {
            throw new CheckpointException($"{where}: dtype '{dtype}' is not supported (F32, F64, I64, I32, U8).");
        }
        long[] shape = ReadIntegers(where, value, "shape");
        if (shape.Any(d => d < 0))
        {
            throw new CheckpointException($"{where}: shape [{string.Join(", ", shape)}] has a negative dimension.");
        }
        long[] offsets = ReadIntegers(where, value, "data_offsets");
        if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0])
        {
            throw new CheckpointException($"{where}: data_offsets [{string.Join(", ", offsets)}] are not a range [begin, end] with 0 <= begin <= end.");
        }
        return (name, dtype, shape, offsets[0], offsets[1]);
    }

    private static long[] ReadIntegers(string where, JsonElement entry, string key)
    {
        if (!entry.TryGetProperty(key, out JsonElement array) || array.ValueKind != JsonValueKind.Array)
        {
            throw new CheckpointException($"{where}: missing array '{key}'.");
        }
        var result = new long[array.GetArrayLength()];
        int i = 0;
        foreach (JsonElement item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out result[i++]))
            {
                throw new CheckpointException($"{where}: '{key}' holds {item.GetRawText()}, not an integer.");
            }
        }
        return result;
    }

    private static byte[] BuildHeader(string path, List<SafeTensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(MetadataKey);
                foreach (var (key, value) in metadata)
                {
                    json.WriteString(key, value);
                }
                json.WriteEndObject();
            }
            var names = new HashSet<string>(StringComparer.Ordinal);
            long offset = 0;
            foreach (SafeTensor t in tensors)
            {
                string where = $"Checkpoint '{path}': tensor '{t.Name}'";
                if (t.Name == MetadataKey || !names.Add(t.Name))
                {
                    throw new CheckpointException($"{where}: the name is {(t.Name == MetadataKey ? "reserved" : "used twice")}.");
                }
                int size = DTypeSize(t.DType);
                if (size == 0)
                {
                    throw new CheckpointException($"{where}: dtype '{t.DType}' is not supported (F32, F64, I64, I32, U8).");
                }
                if (t.Shape.Any(d => d < 0) || ElementCount(t.Shape) * size != t.Data.Length)
                {
                    throw new CheckpointException($"{where}: {t.DType} [{string.Join(", ", t.Shape)}] needs {ElementCount(t.Shape) * size} bytes but holds {t.Data.Length}.");
                }
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", t.DType);
                json.WriteStartArray("shape");
                foreach (long d in t.Shape)
                {
                    json.WriteNumberValue(d);
                }
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.Data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.Data.Length;
            }
            json.WriteEndObject();
        }
        // Pad with spaces so the data starts 8-byte aligned, as the safetensors package does.
        int padding = (int)(-buffer.Length & 7);
        buffer.Write(Encoding.ASCII.GetBytes(new string(' ', padding)));
        return buffer.ToArray();
    }

    internal static long ElementCount(long[] shape)
    {
        long count = 1;
        foreach (long d in shape)
        {
            count = checked(count * d);
        }
        return count;
    }

    internal static void RequireLittleEndian()
    {
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("safetensors data is little-endian; this machine is big-endian.");
        }
    }

    private static void ReadExactly(SafeFileHandle file, Span<byte> destination, long offset)
    {
        while (destination.Length > 0)
        {
            int read = RandomAccess.Read(file, destination, offset);
            if (read == 0)
            {
                throw new EndOfStreamException($"unexpected end of file at byte {offset}.");
            }
            destination = destination[read..];
            offset += read;
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // The original error matters more than a leftover temporary file.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
