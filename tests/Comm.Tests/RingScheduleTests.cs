namespace Engine.Comm.Tests;

/// <summary>
/// The host ring's schedules without sockets: hand-worked steps for one rank, and every rank's schedule
/// run together slice by slice through in-memory links, where a send that left before its slice had
/// been received (or a receive of the wrong size) shows up as a wrong result or a stall.
/// </summary>
public class RingScheduleTests
{
    public static TheoryData<int, int, int> Shapes()
    {
        var data = new TheoryData<int, int, int>();
        foreach (int n in new[] { 1, 2, 3, 4, 8 })
        {
            foreach (int length in new[] { 0, 1, 5, 24, 1001 })
            {
                foreach (int slice in new[] { 1, 7, 4096 })
                {
                    data.Add(n, length, slice);
                }
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void AllReduceLeavesEveryRankWithTheSumAndTheMean(int n, int length, int slice)
    {
        float[][] inputs = Inputs(n, length);
        float[] sum = new float[length];
        for (int i = 0; i < length; i++)
        {
            for (int r = 0; r < n; r++)
            {
                sum[i] += inputs[r][i]; // small integers: exact in any order
            }
        }

        float[][] summed = Run(Clone(inputs), r => RingSchedule.AllReduce(r, n, length, ReduceOp.Sum, slice));
        float[][] averaged = Run(Clone(inputs), r => RingSchedule.AllReduce(r, n, length, ReduceOp.Avg, slice));

        for (int r = 0; r < n; r++)
        {
            Assert.Equal(sum, summed[r]);
            Assert.Equal(sum.Select(s => s / n).ToArray(), averaged[r]);
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ReduceScatterLeavesRankRWithTheSumOfBlockR(int n, int chunk, int slice)
    {
        float[][] inputs = Inputs(n, n * chunk);
        float[][] result = Run(Clone(inputs), r => RingSchedule.ReduceScatter(r, n, chunk, ReduceOp.Sum, slice));
        for (int r = 0; r < n; r++)
        {
            for (int i = r * chunk; i < (r + 1) * chunk; i++)
            {
                Assert.Equal(inputs.Sum(x => x[i]), result[r][i]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void AllGatherGivesEveryRankEveryBlock(int n, int chunk, int slice)
    {
        float[][] own = Inputs(n, n * chunk);
        var expected = new float[n * chunk];
        var start = new float[n][];
        for (int r = 0; r < n; r++)
        {
            start[r] = new float[n * chunk];
            Array.Copy(own[r], r * chunk, start[r], r * chunk, chunk);
            Array.Copy(own[r], r * chunk, expected, r * chunk, chunk);
        }
        float[][] result = Run(start, r => RingSchedule.AllGather(r, n, chunk, slice));
        for (int r = 0; r < n; r++)
        {
            Assert.Equal(expected, result[r]);
        }
    }

    [Theory]
    [InlineData(1, 10, 3)]
    [InlineData(2, 10, 3)]
    [InlineData(4, 1001, 64)]
    [InlineData(8, 5, 1)]
    public void BroadcastFromAnyRootReachesEveryRank(int n, int length, int slice)
    {
        for (int root = 0; root < n; root++)
        {
            float[][] inputs = Inputs(n, length);
            float[] expected = (float[])inputs[root].Clone();
            float[][] result = Run(inputs, r => RingSchedule.Broadcast(r, n, root, length, slice));
            for (int r = 0; r < n; r++)
            {
                Assert.Equal(expected, result[r]);
            }
        }
    }

    [Fact]
    public void AllReduceStepsOfRank1Of4AreTheRingsBlocks()
    {
        // 8 elements in 4 segments of 2. Reduce-scatter step s: send r-s, add r-s-1; all-gather step s:
        // send r+1-s (the segment this rank finished or received last), copy r-s.
        RingSchedule s = RingSchedule.AllReduce(1, 4, 8, ReduceOp.Avg, 1);
        RingBlock Seg(int i) => new(2 * i, 2);
        RingStep[] expected =
        [
            new(Seg(1), Seg(0), RingReceive.Reduce, -1),
            new(Seg(0), Seg(3), RingReceive.Reduce, 0),
            new(Seg(3), Seg(2), RingReceive.ReduceAndAverage, 1),
            new(Seg(2), Seg(1), RingReceive.Copy, 2),
            new(Seg(1), Seg(0), RingReceive.Copy, 3),
            new(Seg(0), Seg(3), RingReceive.Copy, 4),
        ];
        Assert.Equal(expected, s.Steps);
    }

    [Fact]
    public void SegmentsCoverAnyLengthWithoutGapsOrOverlap()
    {
        Assert.Equal(new RingBlock(0, 2), RingSchedule.Segment(10, 4, 0));
        Assert.Equal(new RingBlock(2, 3), RingSchedule.Segment(10, 4, 1));
        Assert.Equal(new RingBlock(5, 2), RingSchedule.Segment(10, 4, 2));
        Assert.Equal(new RingBlock(7, 3), RingSchedule.Segment(10, 4, 3));
        Assert.Equal(new RingBlock(7, 3), RingSchedule.Segment(10, 4, -1));
        Assert.Equal(new RingBlock(0, 0), RingSchedule.Segment(3, 4, 0));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void EachRankSendsTwiceNMinus1OverNOfTheBufferInAnAllReduce(int n)
    {
        long length = 1000L * n;
        for (int r = 0; r < n; r++)
        {
            RingSchedule s = RingSchedule.AllReduce(r, n, length, ReduceOp.Sum, 256);
            Assert.Equal(2 * (n - 1) * length / n, s.ElementsSent);
            Assert.Equal(2 * (n - 1) * length / n, s.ElementsReceived);
        }
    }

    [Fact]
    public void BroadcastIsAChainTheLastRankOnlyReceives()
    {
        RingSchedule root = RingSchedule.Broadcast(2, 4, 2, 100, 16);
        RingSchedule middle = RingSchedule.Broadcast(3, 4, 2, 100, 16);
        RingSchedule last = RingSchedule.Broadcast(1, 4, 2, 100, 16);
        Assert.Equal((100, 0), (root.ElementsSent, root.ElementsReceived));
        Assert.Equal((100, 100), (middle.ElementsSent, middle.ElementsReceived));
        Assert.Equal((0, 100), (last.ElementsSent, last.ElementsReceived));
    }

    [Fact]
    public void ASliceIsForwardedAsSoonAsItHasArrivedNotTheWholeBlock()
    {
        // 3 ranks, 12 elements: segments of 4, slices of 2, so every block is 2 slices.
        RingSchedule s = RingSchedule.AllReduce(0, 3, 12, ReduceOp.Sum, 2);
        Assert.Equal(4, s.Steps.Count);
        long[][] needed = Enumerable.Range(0, 4).Select(j => new[] { s.ReceivedSlicesNeededToSend(j, 0), s.ReceivedSlicesNeededToSend(j, 1) }).ToArray();
        Assert.Equal([0, 0], needed[0]);   // its own segment: no wait
        Assert.Equal([1, 2], needed[1]);   // slice k of what step 0 received
        Assert.Equal([3, 4], needed[2]);
        Assert.Equal([5, 6], needed[3]);

        RingSchedule chain = RingSchedule.Broadcast(1, 3, 0, 5, 2);
        Assert.Equal([1, 2, 3], new[] { 0L, 1, 2 }.Select(k => chain.ReceivedSlicesNeededToSend(0, k)));
        Assert.Equal(new RingBlock(4, 1), chain.Slice(new RingBlock(0, 5), 2));
    }

    [Fact]
    public void BadShapesAreRefusedNamingTheValue()
    {
        Assert.Contains("rank 4 of world size 4", Assert.Throws<ArgumentException>(() => RingSchedule.AllReduce(4, 4, 10, ReduceOp.Sum, 1)).Message);
        Assert.Contains("a slice of 0 elements", Assert.Throws<ArgumentOutOfRangeException>(() => RingSchedule.AllGather(0, 2, 10, 0)).Message);
        Assert.Contains("length -1", Assert.Throws<ArgumentOutOfRangeException>(() => RingSchedule.ReduceScatter(0, 2, -1, ReduceOp.Sum, 4)).Message);
        Assert.Contains("root 3", Assert.Throws<ArgumentOutOfRangeException>(() => RingSchedule.Broadcast(0, 3, 3, 10, 4)).Message);
    }

    private static float[][] Inputs(int n, int length)
        => Enumerable.Range(0, n).Select(r => Enumerable.Range(0, length).Select(i => (float)((r + 1) * (i % 13) - 3 * r)).ToArray()).ToArray();

    private static float[][] Clone(float[][] x) => x.Select(a => (float[])a.Clone()).ToArray();

    /// <summary>
    /// Runs every rank's schedule over in-memory FIFO links (rank r to r+1), one slice at a time in
    /// round-robin, each rank sending only what <see cref="RingSchedule.ReceivedSlicesNeededToSend"/> allows.
    /// </summary>
    private static float[][] Run(float[][] data, Func<int, RingSchedule> scheduleOf)
    {
        int n = data.Length;
        RingSchedule[] schedules = Enumerable.Range(0, n).Select(scheduleOf).ToArray();
        var links = Enumerable.Range(0, n).Select(_ => new Queue<float[]>()).ToArray(); // links[r]: r -> r+1
        var send = new (int Step, long Slice)[n];
        var recv = new (int Step, long Slice)[n];
        var received = new long[n];
        bool moved = true;
        while (moved)
        {
            moved = false;
            for (int r = 0; r < n; r++)
            {
                RingSchedule s = schedules[r];
                if (send[r].Step < s.Steps.Count)
                {
                    RingBlock block = s.Steps[send[r].Step].Send;
                    if (send[r].Slice >= s.SliceCount(block.Length))
                    {
                        send[r] = (send[r].Step + 1, 0);
                        moved = true;
                    }
                    else if (received[r] >= s.ReceivedSlicesNeededToSend(send[r].Step, send[r].Slice))
                    {
                        RingBlock slice = s.Slice(block, send[r].Slice);
                        links[r].Enqueue(data[r].AsSpan((int)slice.Offset, (int)slice.Length).ToArray());
                        send[r].Slice++;
                        moved = true;
                    }
                }
                if (recv[r].Step < s.Steps.Count)
                {
                    RingStep step = s.Steps[recv[r].Step];
                    Queue<float[]> fromLeft = links[(r - 1 + n) % n];
                    if (recv[r].Slice >= s.SliceCount(step.Receive.Length))
                    {
                        recv[r] = (recv[r].Step + 1, 0);
                        moved = true;
                    }
                    else if (fromLeft.Count > 0)
                    {
                        RingBlock slice = s.Slice(step.Receive, recv[r].Slice);
                        float[] incoming = fromLeft.Dequeue();
                        Assert.Equal(slice.Length, incoming.Length);
                        Span<float> dst = data[r].AsSpan((int)slice.Offset, (int)slice.Length);
                        for (int i = 0; i < dst.Length; i++)
                        {
                            dst[i] = step.Action == RingReceive.Copy ? incoming[i] : dst[i] + incoming[i];
                            if (step.Action == RingReceive.ReduceAndAverage)
                            {
                                dst[i] /= n;
                            }
                        }
                        recv[r].Slice++;
                        received[r]++;
                        moved = true;
                    }
                }
            }
        }
        for (int r = 0; r < n; r++)
        {
            Assert.True(send[r].Step == schedules[r].Steps.Count && recv[r].Step == schedules[r].Steps.Count,
                $"rank {r} stalled at send step {send[r].Step}, receive step {recv[r].Step} of {schedules[r].Steps.Count}");
            Assert.Empty(links[r]);
        }
        return data;
    }
}
