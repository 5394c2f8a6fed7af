namespace Engine.Comm;

/// <summary>A contiguous run of elements of the staged buffer; length 0 moves nothing.</summary>
public readonly record struct RingBlock(long Offset, long Length)
{
    public static readonly RingBlock Empty = new(0, 0);
}

/// <summary>What a rank does with the elements it receives at a step.</summary>
public enum RingReceive
{
    /// <summary>Write them into the block (all-gather, broadcast).</summary>
    Copy,

    /// <summary>Add them to the block (reduce-scatter).</summary>
    Reduce,

    /// <summary>Add them, then divide the block by the world size: the last reduce-scatter step of an average.</summary>
    ReduceAndAverage,
}

/// <summary>
/// One step of a ring collective on one rank: send <see cref="Send"/> to the right neighbour while
/// receiving <see cref="Receive"/> from the left one. When <see cref="SendFollows"/> is a step index,
/// the sent block is the one received at that step, so each of its slices may go out only once that
/// slice has arrived (and been reduced); -1 means the block is already here.
/// </summary>
public readonly record struct RingStep(RingBlock Send, RingBlock Receive, RingReceive Action, int SendFollows);

/// <summary>
/// Which block each rank sends and receives at each step of a host ring collective, and how the
/// blocks are cut into slices and pipelined: the whole algorithm, without sockets, so that it can be
/// read and tested on its own. <see cref="RingTransport"/> runs it over the ring's links.
/// </summary>
/// <remarks>
/// All-reduce is NCCL's and Gloo's ring: a reduce-scatter (n-1 steps; at step s rank r sends segment
/// r-s and adds segment r-s-1 from its left neighbour, so afterwards it holds the full sum of segment
/// r+1) then an all-gather (n-1 steps passing each fully reduced segment on). Each segment is summed by
/// exactly one rank, in ring order, and then copied, so every rank ends bit-identical. Every rank
/// sends 2(n-1)/n of the buffer, the least any all-reduce can, which is why busbw = algbw * 2(n-1)/n
/// is compared with the link rate. Broadcast is a chain from the root: every rank but the last
/// forwards each slice as soon as it has it.
/// </remarks>
public sealed class RingSchedule
{
    private readonly RingStep[] _steps;
    private readonly long[] _receivedSlicesBefore;

    public int Rank { get; }

    public int WorldSize { get; }

    /// <summary>Elements per slice, the unit of pipelining: a slice is forwarded as soon as it has arrived.</summary>
    public int SliceElements { get; }

    public IReadOnlyList<RingStep> Steps => _steps;

    /// <summary>Elements this rank sends in the whole collective.</summary>
    public long ElementsSent => _steps.Sum(s => s.Send.Length);

    /// <summary>Elements this rank receives in the whole collective.</summary>
    public long ElementsReceived => _steps.Sum(s => s.Receive.Length);

    private RingSchedule(int rank, int worldSize, int sliceElements, RingStep[] steps)
    {
        Rank = rank;
        WorldSize = worldSize;
        SliceElements = sliceElements;
        _steps = steps;
        _receivedSlicesBefore = new long[steps.Length + 1];
        for (int j = 0; j < steps.Length; j++)
        {
            _receivedSlicesBefore[j + 1] = _receivedSlicesBefore[j] + SliceCount(steps[j].Receive.Length);
        }
    }

    /// <summary>Segment <paramref name="i"/> (taken mod n) of a buffer of <paramref name="length"/> elements: [len*i/n, len*(i+1)/n), so any length works.</summary>
    public static RingBlock Segment(long length, int worldSize, int i)
    {
        i = ((i % worldSize) + worldSize) % worldSize;
        long start = length * i / worldSize, end = length * (i + 1) / worldSize;
        return new RingBlock(start, end - start);
    }

    /// <summary>The reduce-scatter then all-gather ring over one buffer; every rank ends with the whole reduction.</summary>
    public static RingSchedule AllReduce(int rank, int worldSize, long length, ReduceOp op, int sliceElements)
    {
        Check(rank, worldSize, length, sliceElements);
        int n = worldSize;
        var steps = new RingStep[2 * (n - 1)];
        for (int s = 0; s < n - 1; s++)
        {
            steps[s] = new RingStep(Segment(length, n, rank - s), Segment(length, n, rank - s - 1), ReduceAction(s, n, op), s - 1);
            steps[n - 1 + s] = new RingStep(Segment(length, n, rank + 1 - s), Segment(length, n, rank - s), RingReceive.Copy, n - 2 + s);
        }
        return new RingSchedule(rank, n, sliceElements, steps);
    }

    /// <summary>
    /// The first half of all-reduce over n blocks of <paramref name="chunk"/> elements (block i at i x chunk):
    /// rank r ends holding the reduction of block r.
    /// </summary>
    public static RingSchedule ReduceScatter(int rank, int worldSize, long chunk, ReduceOp op, int sliceElements)
    {
        Check(rank, worldSize, chunk, sliceElements);
        int n = worldSize;
        var steps = new RingStep[n - 1];
        for (int s = 0; s < n - 1; s++)
        {
            steps[s] = new RingStep(Block(chunk, n, rank - s - 1), Block(chunk, n, rank - s - 2), ReduceAction(s, n, op), s - 1);
        }
        return new RingSchedule(rank, n, sliceElements, steps);
    }

    /// <summary>
    /// The second half of all-reduce: rank r starts with block r of n blocks of <paramref name="chunk"/>
    /// elements and ends with all of them.
    /// </summary>
    public static RingSchedule AllGather(int rank, int worldSize, long chunk, int sliceElements)
    {
        Check(rank, worldSize, chunk, sliceElements);
        int n = worldSize;
        var steps = new RingStep[n - 1];
        for (int s = 0; s < n - 1; s++)
        {
            steps[s] = new RingStep(Block(chunk, n, rank - s), Block(chunk, n, rank - s - 1), RingReceive.Copy, s - 1);
        }
        return new RingSchedule(rank, n, sliceElements, steps);
    }

    /// <summary>
    /// A chain root -&gt; root+1 -&gt; ... -&gt; root-1 in one step: the root only sends, the last rank
    /// only receives, every other rank forwards each slice as soon as it has received it.
    /// </summary>
    public static RingSchedule Broadcast(int rank, int worldSize, int root, long length, int sliceElements)
    {
        Check(rank, worldSize, length, sliceElements);
        if (root < 0 || root >= worldSize)
        {
            throw new ArgumentOutOfRangeException(nameof(root), $"broadcast: root {root} is outside 0..{worldSize - 1}.");
        }
        if (worldSize == 1)
        {
            return new RingSchedule(rank, worldSize, sliceElements, []);
        }
        var whole = new RingBlock(0, length);
        bool isRoot = rank == root, isLast = (rank + 1) % worldSize == root;
        RingStep step = isRoot
            ? new RingStep(whole, RingBlock.Empty, RingReceive.Copy, -1)
            : new RingStep(isLast ? RingBlock.Empty : whole, whole, RingReceive.Copy, isLast ? -1 : 0);
        return new RingSchedule(rank, worldSize, sliceElements, [step]);
    }

    /// <summary>Slices a block of <paramref name="length"/> elements is cut into.</summary>
    public long SliceCount(long length) => (length + SliceElements - 1) / SliceElements;

    /// <summary>Slice <paramref name="slice"/> of a block: where it starts and how many elements it has.</summary>
    public RingBlock Slice(RingBlock block, long slice)
    {
        long offset = slice * SliceElements;
        return new RingBlock(block.Offset + offset, Math.Min(SliceElements, block.Length - offset));
    }

    /// <summary>
    /// How many slices this rank must have received (counted over all steps, in order) before it may
    /// send slice <paramref name="slice"/> of step <paramref name="step"/>: 0 when the step sends data
    /// that was already here.
    /// </summary>
    public long ReceivedSlicesNeededToSend(int step, long slice)
    {
        int follows = _steps[step].SendFollows;
        return follows < 0 ? 0 : _receivedSlicesBefore[follows] + slice + 1;
    }

    private static RingBlock Block(long chunk, int worldSize, int i) => new((((i % worldSize) + worldSize) % worldSize) * chunk, chunk);

    private static RingReceive ReduceAction(int step, int worldSize, ReduceOp op)
        => step == worldSize - 2 && op == ReduceOp.Avg ? RingReceive.ReduceAndAverage : RingReceive.Reduce;

    private static void Check(int rank, int worldSize, long length, int sliceElements)
    {
        if (worldSize < 1 || rank < 0 || rank >= worldSize)
        {
            throw new ArgumentException($"ring schedule: rank {rank} of world size {worldSize} is not a valid position.");
        }
        if (length < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"ring schedule: length {length} is negative.");
        }
        if (sliceElements < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(sliceElements), $"ring schedule: a slice of {sliceElements} elements cannot carry data; it needs at least 1.");
        }
    }
}
