using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Engine.Comm;

/// <summary>
/// The rendezvous store's wire format: little-endian frames, a command byte then its fields; a reply
/// is a status byte then its fields. Lengths are capped so that a stray client sending garbage cannot
/// make the server allocate without bound.
/// </summary>
internal static class StoreWire
{
    public const uint Magic = 0x53474E45; // "ENGS"
    public const ushort Version = 1;
    public const int MaxKeyBytes = 4096;
    public const int MaxValueBytes = 16 << 20;

    public enum Command : byte
    {
        Hello = 1,
        Set = 2,
        Get = 3,
        Add = 4,
        Wait = 5,
        Report = 6,
        Failure = 7,
        Bye = 8,
    }

    public enum Status : byte
    {
        Ok = 0,
        Timeout = 1,
        Error = 2,
    }

    /// <summary>Builds one frame in memory so that it goes out in one send.</summary>
    public sealed class Writer
    {
        private readonly MemoryStream _ms = new();

        public Writer Byte(byte v) { _ms.WriteByte(v); return this; }

        public Writer Int32(int v)
        {
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(b, v);
            _ms.Write(b);
            return this;
        }

        public Writer UInt32(uint v)
        {
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(b, v);
            _ms.Write(b);
            return this;
        }

        public Writer Int64(long v)
        {
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(b, v);
            _ms.Write(b);
            return this;
        }

        public Writer Bytes(ReadOnlySpan<byte> v)
        {
            Int32(v.Length);
            _ms.Write(v);
            return this;
        }

        public Writer String(string s) => Bytes(Encoding.UTF8.GetBytes(s));

        public byte[] ToArray() => _ms.ToArray();
    }

    /// <summary>Reads fields from a stream, failing on lengths beyond the caps.</summary>
    public sealed class Reader(Stream stream)
    {
        private readonly byte[] _scratch = new byte[8];

        public async ValueTask<byte> ByteAsync(CancellationToken ct)
        {
            await stream.ReadExactlyAsync(_scratch.AsMemory(0, 1), ct).ConfigureAwait(false);
            return _scratch[0];
        }

        public async ValueTask<int> Int32Async(CancellationToken ct)
        {
            await stream.ReadExactlyAsync(_scratch.AsMemory(0, 4), ct).ConfigureAwait(false);
            return BinaryPrimitives.ReadInt32LittleEndian(_scratch);
        }

        public async ValueTask<uint> UInt32Async(CancellationToken ct)
        {
            await stream.ReadExactlyAsync(_scratch.AsMemory(0, 4), ct).ConfigureAwait(false);
            return BinaryPrimitives.ReadUInt32LittleEndian(_scratch);
        }

        public async ValueTask<long> Int64Async(CancellationToken ct)
        {
            await stream.ReadExactlyAsync(_scratch.AsMemory(0, 8), ct).ConfigureAwait(false);
            return BinaryPrimitives.ReadInt64LittleEndian(_scratch);
        }

        public async ValueTask<byte[]> BytesAsync(int max, CancellationToken ct)
        {
            int n = await Int32Async(ct).ConfigureAwait(false);
            if (n < 0 || n > max)
            {
                throw new InvalidDataException($"field of {n} bytes (at most {max} allowed)");
            }
            var data = new byte[n];
            await stream.ReadExactlyAsync(data, ct).ConfigureAwait(false);
            return data;
        }

        public async ValueTask<string> StringAsync(CancellationToken ct)
            => Encoding.UTF8.GetString(await BytesAsync(MaxKeyBytes, ct).ConfigureAwait(false));
    }

    /// <summary>Blocking reads for the client, whose socket carries a receive timeout.</summary>
    public static void ReadExactly(Socket socket, Span<byte> into)
    {
        int got = 0;
        while (got < into.Length)
        {
            int n = socket.Receive(into[got..]);
            if (n == 0)
            {
                throw new EndOfStreamException("the rendezvous store closed the connection");
            }
            got += n;
        }
    }

    public static byte ReadByte(Socket s) { Span<byte> b = stackalloc byte[1]; ReadExactly(s, b); return b[0]; }

    public static int ReadInt32(Socket s) { Span<byte> b = stackalloc byte[4]; ReadExactly(s, b); return BinaryPrimitives.ReadInt32LittleEndian(b); }

    public static long ReadInt64(Socket s) { Span<byte> b = stackalloc byte[8]; ReadExactly(s, b); return BinaryPrimitives.ReadInt64LittleEndian(b); }

    public static byte[] ReadBytes(Socket s, int max)
    {
        int n = ReadInt32(s);
        if (n < 0 || n > max)
        {
            throw new InvalidDataException($"the rendezvous store sent a field of {n} bytes");
        }
        var data = new byte[n];
        ReadExactly(s, data);
        return data;
    }

    public static string ReadString(Socket s) => Encoding.UTF8.GetString(ReadBytes(s, MaxValueBytes));
}
