namespace Engine.Runner.Data;

/// <summary>
/// The order samples are visited in: one shuffle per epoch, a function of (seed, epoch) alone so a resumed
/// run replays it, and the per-rank shard of it that DistributedSampler(drop_last=True) would give.
/// </summary>
public static class EpochOrder
{
    /// <summary>A permutation of 0..count-1 (Fisher-Yates), deterministic from (<paramref name="seed"/>, <paramref name="epoch"/>).</summary>
    public static int[] Permutation(int count, int seed, int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var order = new int[count];
        for (int i = 0; i < count; i++)
        {
            order[i] = i;
        }
        var rng = SplitMix64.For(seed, epoch, 0x5EED_0F_E90C);
        for (int i = count - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>
    /// Rank <paramref name="rank"/>'s share of <paramref name="permutation"/>: the permutation truncated to a
    /// multiple of <paramref name="worldSize"/>, then every worldSize-th index starting at rank (round-robin),
    /// as torch's DistributedSampler with drop_last=True. Shards are disjoint and equally long.
    /// </summary>
    public static int[] Shard(int[] permutation, int rank, int worldSize)
    {
        ArgumentNullException.ThrowIfNull(permutation);
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        if (rank < 0 || rank >= worldSize)
        {
            throw new ArgumentOutOfRangeException(nameof(rank), $"Shard: rank {rank} is outside 0..{worldSize - 1}.");
        }
        int perRank = permutation.Length / worldSize;
        var shard = new int[perRank];
        for (int k = 0; k < perRank; k++)
        {
            shard[k] = permutation[rank + k * worldSize];
        }
        return shard;
    }

    /// <summary>Steps in an epoch of <paramref name="count"/> samples (drop_last drops a final partial batch).</summary>
    public static int StepsPerEpoch(int count, int batchSize, bool dropLast = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        return dropLast ? count / batchSize : (count + batchSize - 1) / batchSize;
    }

    /// <summary>The indices of batch <paramref name="step"/> of an epoch order (the last one may be shorter).</summary>
    public static ReadOnlySpan<int> Batch(int[] order, int step, int batchSize)
    {
        ArgumentNullException.ThrowIfNull(order);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        int start = step * batchSize;
        if (step < 0 || start >= order.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(step), $"Batch: step {step} of batch size {batchSize} is past the {order.Length} samples.");
        }
        return order.AsSpan(start, Math.Min(batchSize, order.Length - start));
    }
}
