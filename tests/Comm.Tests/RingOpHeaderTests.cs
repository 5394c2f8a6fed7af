namespace Engine.Comm.Tests;

public class RingOpHeaderTests
{
    [Fact]
    public void AHeaderReadsBackAsWrittenAndDiffersInEveryField()
    {
        var h = new RingOpHeader(RingOpKind.Broadcast, 41, 1L << 33, 3);
        var bytes = new byte[RingOpHeader.Bytes];
        h.Write(bytes);
        Assert.Equal(h, RingOpHeader.Read(bytes));

        RingOpHeader[] others = [h with { Kind = RingOpKind.AllReduce }, h with { Sequence = 42 }, h with { Count = 1 }, h with { Root = 0 }];
        foreach (RingOpHeader other in others)
        {
            var theirs = new byte[RingOpHeader.Bytes];
            other.Write(theirs);
            Assert.False(bytes.AsSpan().SequenceEqual(theirs), $"{other} encodes like {h}");
        }
    }

    [Fact]
    public void AMismatchNamesBothRanksAndWhatEachIssued()
    {
        var mine = new RingOpHeader(RingOpKind.AllReduce, 7, 1000, -1);
        var theirs = new RingOpHeader(RingOpKind.AllReduce, 7, 999, -1);
        string message = mine.Mismatch("all_reduce", 2, 1, theirs);
        Assert.Contains("rank 1 issued collective #7 as AllReduce of 999 elements", message);
        Assert.Contains("rank 2 issued #7 as AllReduce of 1000 elements", message);
    }
}
