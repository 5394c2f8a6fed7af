namespace Engine.Nn;

/// <summary>
/// How a <see cref="ParameterStore"/> lays out its flat parameter and gradient buffers: consecutive runs of
/// parameters (in flat order) form segments, each padded to a multiple of <see cref="Align"/>, and the layout says
/// which full buffers this device keeps. DDP's segments are its gradient buckets; ZeRO's are the same buckets padded
/// to the world size, so that rank r's piece of each is the same length on every rank; FSDP's are its units.
/// </summary>
/// <param name="SegmentParameters">Parameters per segment, in flat order; they add up to the model's parameter count.</param>
/// <param name="Align">Every segment's length is padded up to a multiple of this (the world size for sharded modes; 1 otherwise).</param>
/// <param name="HoldValues">Whether the full flat parameter buffer exists (false under FSDP, which keeps a shard).</param>
/// <param name="HoldGrads">Whether the full flat gradient buffer exists (false under ZeRO-2 and FSDP).</param>
public sealed record StoreLayout(IReadOnlyList<int> SegmentParameters, int Align = 1, bool HoldValues = true, bool HoldGrads = true)
{
    /// <summary>One segment holding every parameter, unpadded, both buffers held: the single-device layout.</summary>
    public static StoreLayout Whole(int parameters) => new(parameters == 0 ? Array.Empty<int>() : new[] { parameters });

    internal void Check(int parameters)
    {
        if (Align < 1) throw new ArgumentException($"A store layout's alignment must be at least 1, got {Align}.");
        if (SegmentParameters.Any(c => c < 1)) throw new ArgumentException("Every segment of a store layout must hold at least one parameter.");
        if (SegmentParameters.Sum() != parameters)
        {
            throw new ArgumentException($"The store layout's segments hold {SegmentParameters.Sum()} parameters; the model has {parameters}.");
        }
    }
}

/// <summary>One segment of the flat buffers: elements [Offset, Offset + Length) are parameters, up to Offset + PaddedLength zero padding.</summary>
/// <param name="FirstParameter">Index of its first parameter in <see cref="ParameterStore.FlatOrder"/>.</param>
public sealed record StoreSegment(int Index, long Offset, long Length, long PaddedLength, int FirstParameter, int Parameters)
{
    /// <summary>Length of each rank's piece when the segment is split evenly over <paramref name="ranks"/> ranks.</summary>
    public long PieceLength(int ranks) => PaddedLength % ranks == 0 ? PaddedLength / ranks
        : throw new InvalidOperationException($"Segment {Index} ({PaddedLength} elements) is not padded to a multiple of {ranks} ranks.");

    /// <summary>Flat offset of rank <paramref name="rank"/>'s piece.</summary>
    public long PieceOffset(int rank, int ranks) => Offset + rank * PieceLength(ranks);
}
