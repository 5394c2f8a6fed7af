using System.Buffers.Binary;

namespace Engine.Comm;

/// <summary>The host ring's operations, as numbered in <see cref="RingOpHeader"/>.</summary>
internal enum RingOpKind
{
    AllReduce = 1,
    Reduce,
    Broadcast,
    AllGather,
    ReduceScatter,
    Barrier,
    PointToPoint,
    AllReduceFp16,
    AllReduceBf16,
}

/// <summary>
/// The 32 bytes every host ring operation starts with, exchanged with both neighbours: both must be in
/// the same collective (the same call number, kind, size and root), or the ring's byte counts would
/// silently disagree.
/// </summary>
internal readonly record struct RingOpHeader(RingOpKind Kind, long Sequence, long Count, int Root)
{
    public const int Bytes = 32;

    public void Write(Span<byte> into)
    {
        into[..Bytes].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(into, RingSetup.Magic);
        BinaryPrimitives.WriteInt32LittleEndian(into[4..], (int)Kind);
        BinaryPrimitives.WriteInt64LittleEndian(into[8..], Sequence);
        BinaryPrimitives.WriteInt64LittleEndian(into[16..], Count);
        BinaryPrimitives.WriteInt32LittleEndian(into[24..], Root);
    }

    public static RingOpHeader Read(ReadOnlySpan<byte> from) => new(
        (RingOpKind)BinaryPrimitives.ReadInt32LittleEndian(from[4..]),
        BinaryPrimitives.ReadInt64LittleEndian(from[8..]),
        BinaryPrimitives.ReadInt64LittleEndian(from[16..]),
        BinaryPrimitives.ReadInt32LittleEndian(from[24..]));

    /// <summary>The error when the left neighbour's header <paramref name="theirs"/> differs from this rank's.</summary>
    public string Mismatch(string op, int rank, int left, RingOpHeader theirs)
        => $"{op}: rank {left} issued collective #{theirs.Sequence} as {theirs.Kind} of {theirs.Count} elements (root {theirs.Root}), " +
           $"while rank {rank} issued #{Sequence} as {Kind} of {Count} elements (root {Root}): every rank must call the same collectives, in the same order, with the same sizes.";
}
