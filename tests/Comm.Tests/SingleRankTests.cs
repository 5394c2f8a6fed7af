using Engine.Kernels;
using Engine.Tests;

namespace Engine.Comm.Tests;

/// <summary>A world of one (no launcher variables): every collective is the identity, without a store.</summary>
public class SingleRankTests
{
    [Fact]
    public void EveryCollectiveIsTheIdentityForOneRank()
    {
        TestDevice.Use(dev =>
        {
            var rng = Numerics.NewRandom(out int seed);
            using ICommunicator comm = CommunicatorFactory.FromEnvironment(dev, "host", TimeSpan.FromSeconds(5), LaunchEnvironment.Single);
            Assert.Equal((0, 1, "host"), (comm.Rank, comm.WorldSize, comm.Backend));
            foreach (int n in new[] { 0, 1, 7, 1000 })
            {
                float[] x = Numerics.Uniform(rng, n);
                using var a = dev.Upload<float>(x);
                comm.AllReduce(a.View, ReduceOp.Avg).Wait();
                comm.Broadcast(a.View, 0).Wait();
                comm.Reduce(a.View, 0).Wait();
                Assert.Equal(x, dev.Download<float>(a.View));

                using var gathered = Numerics.Poisoned(dev, n);
                comm.AllGather(a.View, gathered.View).Wait();
                Assert.Equal(x, dev.Download<float>(gathered.View));
                using var scattered = Numerics.Poisoned(dev, n);
                comm.ReduceScatter(a.View, scattered.View, ReduceOp.Sum).Wait();
                Assert.Equal(x, dev.Download<float>(scattered.View));
            }
            comm.Barrier().Wait();
            Assert.Throws<ArgumentException>(() => comm.AllGather(dev.Allocate<float>(3).View, dev.Allocate<float>(4).View));
            Assert.Throws<ArgumentOutOfRangeException>(() => comm.Broadcast(dev.Allocate<float>(3).View, 1));
        });
    }

    [Fact]
    public void UnknownBackendIsNamed()
    {
        var e = Assert.Throws<ArgumentException>(() => CommunicatorFactory.FromEnvironment(TestDevice.Cpu, "gloo", null, LaunchEnvironment.Single));
        Assert.Contains("'gloo'", e.Message);
    }

    /// <summary>
    /// One NCCL rank without MASTER_PORT (outside the launcher, gpu-check's NCCL step) meets no one, so it opens
    /// no store: it once dialled port 0 and waited out the whole timeout. On the CPU it now fails at once, and
    /// for the right reason.
    /// </summary>
    [Fact]
    public void One_nccl_rank_needs_no_store()
    {
        var e = Assert.Throws<ArgumentException>(() => CommunicatorFactory.FromEnvironment(TestDevice.Cpu, "nccl", TimeSpan.FromSeconds(20), LaunchEnvironment.Single));
        Assert.Contains("needs a CUDA device", e.Message, StringComparison.Ordinal);
    }
}
