namespace Engine.Comm.Tests;

/// <summary>
/// Every collective of the host ring between real processes (2, 3 and 4 ranks, started by the
/// launcher) against a float64 reference, at lengths 0, 1, primes and lengths spanning many
/// pipelined slices (the worker uses 1 KB slices, 256 floats), and the results of every rank equal bit for bit.
/// </summary>
[Collection("processes")]
public class CollectiveProcessTests
{
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void EveryCollectiveMatchesTheReferenceOnEveryRank(int ranks)
    {
        int seed = Random.Shared.Next();
        RankJob.Result job = RankJob.Launch(new LaunchOptions(ranks), TimeSpan.FromSeconds(90), "collectives", seed.ToString(), "1024", "20");
        AssertEveryRankPassedAndAgrees(job, ranks, seed);
    }

    /// <summary>Every rank of a <c>collectives</c> job printed OK, and the results that must be equal on every rank hash the same.</summary>
    internal static void AssertEveryRankPassedAndAgrees(RankJob.Result job, int ranks, int seed)
    {
        string all = job.Stdout + job.Stderr;
        Assert.True(job.ExitCode == 0, $"exit {job.ExitCode} (seed {seed}):\n{all}");

        Dictionary<string, string>? first = null;
        for (int r = 0; r < ranks; r++)
        {
            var lines = job.LinesOf(r).ToList();
            Assert.Contains("OK", lines);
            // Results that must be identical on every rank: all-reduce, broadcast, all-gather.
            var hashes = lines.Where(l => l.StartsWith("HASH all_reduce", StringComparison.Ordinal)
                                          || l.StartsWith("HASH broadcast", StringComparison.Ordinal)
                                          || l.StartsWith("HASH all_gather", StringComparison.Ordinal))
                .Select(l => l.Split(' ')).ToDictionary(p => p[1] + " " + p[2], p => p[3]);
            Assert.True(hashes.Count > 40, $"rank {r} printed {hashes.Count} result hashes:\n{all}");
            if (first is null)
            {
                first = hashes;
                continue;
            }
            foreach ((string key, string hash) in first)
            {
                Assert.True(hashes.TryGetValue(key, out string? mine) && mine == hash, $"rank {r} differs from rank 0 on {key} (seed {seed})");
            }
        }
    }
}
