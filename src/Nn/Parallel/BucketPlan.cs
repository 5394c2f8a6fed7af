namespace Engine.Nn.Parallel;

/// <summary>One DDP bucket: a run of consecutive parameters (in gradient-ready order) and their bytes.</summary>
public readonly record struct PlannedBucket(int FirstParameter, int Parameters, long Bytes);

/// <summary>
/// How DistributedDataParallel cuts gradients into buckets, the one definition the reducer and the scaling
/// model share: parameters are taken whole in the order backward makes them ready; a bucket closes when it
/// reaches its cap; the first cap is 1 MiB (PyTorch's <c>bucket_cap_mb</c> for the first bucket, so the first
/// all-reduce starts early) or the bucket cap if that is smaller; every later cap is the bucket cap.
/// </summary>
public static class BucketPlan
{
    public const double FirstBucketMb = 1.0;

    /// <summary>The first bucket's cap in MiB for a bucket cap of <paramref name="bucketMb"/>.</summary>
    public static double FirstCapMb(double bucketMb) => Math.Min(FirstBucketMb, bucketMb);

    /// <summary>Buckets for parameters of <paramref name="parameterBytes"/> bytes each, in gradient-ready order.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The bucket cap is not a positive finite number.</exception>
    public static IReadOnlyList<PlannedBucket> Cut(IReadOnlyList<long> parameterBytes, double bucketMb)
    {
        ArgumentNullException.ThrowIfNull(parameterBytes);
        if (!double.IsFinite(bucketMb) || bucketMb <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(bucketMb), bucketMb, "the bucket cap must be a positive number of MiB");
        }
        var buckets = new List<PlannedBucket>();
        long cap = Bytes(FirstCapMb(bucketMb)), size = 0;
        int first = 0;
        for (int i = 0; i < parameterBytes.Count; i++)
        {
            size += parameterBytes[i];
            if (size >= cap)
            {
                buckets.Add(new PlannedBucket(first, i + 1 - first, size));
                (first, size, cap) = (i + 1, 0, Bytes(bucketMb));
            }
        }
        if (first < parameterBytes.Count) buckets.Add(new PlannedBucket(first, parameterBytes.Count - first, size));
        return buckets;
    }

    /// <summary>Parameters per bucket for <paramref name="flatOrder"/> (a store layout's segments).</summary>
    public static int[] SegmentSizes(IReadOnlyList<Parameter> flatOrder, double bucketMb)
        => Cut(flatOrder.Select(p => p.Length * sizeof(float)).ToArray(), bucketMb).Select(b => b.Parameters).ToArray();

    private static long Bytes(double mb) => (long)(mb * 1024 * 1024);
}
