using Engine.Runner.Data;

namespace Engine.Runner.Tests;

/// <summary>Per-epoch shuffles and DistributedSampler-like shards.</summary>
public class DataOrderTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(1000)]
    [InlineData(50_000)]
    public void Permutation_is_a_permutation_fixed_by_seed_and_epoch(int count)
    {
        int seed = Random.Shared.Next();
        int[] p = EpochOrder.Permutation(count, seed, epoch: 3);
        Assert.Equal(Enumerable.Range(0, count), p.Order());
        Assert.Equal(p, EpochOrder.Permutation(count, seed, epoch: 3));
        if (count >= 1000)
        {
            Assert.NotEqual(p, EpochOrder.Permutation(count, seed, epoch: 4));
            Assert.NotEqual(p, EpochOrder.Permutation(count, seed + 1, epoch: 3));
            Assert.NotEqual(Enumerable.Range(0, count), p);
        }
    }

    [Fact]
    public void Permutation_does_not_depend_on_earlier_calls()
    {
        // A resumed run asks for epoch 5 first; it must get what an uninterrupted run gets.
        int[] fresh = EpochOrder.Permutation(500, 42, 5);
        for (int e = 0; e < 5; e++)
        {
            EpochOrder.Permutation(500, 42, e);
        }
        Assert.Equal(fresh, EpochOrder.Permutation(500, 42, 5));
    }

    [Fact]
    public void Permutation_positions_are_roughly_uniform()
    {
        // Where element 0 lands over many epochs: each of 10 positions about 10% of the time.
        var counts = new int[10];
        for (int e = 0; e < 5000; e++)
        {
            counts[Array.IndexOf(EpochOrder.Permutation(10, 1, e), 0)]++;
        }
        Assert.All(counts, n => Assert.InRange(n, 380, 620));
    }

    [Theory]
    [InlineData(1003, 1)]
    [InlineData(1003, 2)]
    [InlineData(1003, 4)]
    [InlineData(10, 3)]
    [InlineData(2, 4)]
    public void Shards_are_disjoint_equal_and_cover_the_truncated_permutation(int count, int world)
    {
        int[] p = EpochOrder.Permutation(count, 9, 0);
        int[][] shards = Enumerable.Range(0, world).Select(r => EpochOrder.Shard(p, r, world)).ToArray();
        int perRank = count / world;
        Assert.All(shards, s => Assert.Equal(perRank, s.Length));
        Assert.Equal(p[..(perRank * world)].Order(), shards.SelectMany(s => s).Order());
        // Round-robin: rank r holds positions r, r + world, ...
        for (int r = 0; r < world; r++)
        {
            for (int k = 0; k < perRank; k++)
            {
                Assert.Equal(p[r + k * world], shards[r][k]);
            }
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => EpochOrder.Shard(p, world, world));
        Assert.Throws<ArgumentOutOfRangeException>(() => EpochOrder.Shard(p, -1, world));
    }

    [Fact]
    public void Batches_split_an_order_into_steps()
    {
        int[] order = EpochOrder.Permutation(10, 0, 0);
        Assert.Equal(3, EpochOrder.StepsPerEpoch(10, 3));
        Assert.Equal(4, EpochOrder.StepsPerEpoch(10, 3, dropLast: false));
        Assert.Equal(order[3..6], EpochOrder.Batch(order, 1, 3).ToArray());
        Assert.Equal(order[9..], EpochOrder.Batch(order, 3, 3).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => EpochOrder.Batch(order, 4, 3).ToArray());
    }
}
