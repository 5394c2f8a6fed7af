using Engine.Nn;
using Engine.Runner.Scaling;
using Engine.Tests;

namespace Engine.Runner.Tests;

/// <summary>The scaling model: its byte counts against hand counts, and the properties any sane model of DP and DDP must have.</summary>
public class ScalingModelTests
{
    private static readonly ModelState ResNet34 = ModelState.Of(new ResNetConfig(34));

    [Theory]
    [InlineData("resnet34", "imagenet", 21_289_802L, 17_024L)]
    [InlineData("resnet18", "imagenet", 11_181_642L, 9_600L)]
    [InlineData("resnet34", "cifar", 21_282_122L, 17_024L)]
    [InlineData("resnet18", "cifar", 11_173_962L, 9_600L)]
    public void Analytic_counts_match_torchvision(string model, string stem, long parameters, long buffers)
    {
        // Parameters as torchvision 0.14 reports them (docs/PERF.md); buffers = 2 x BN channels:
        // resnet34 BN channels 64 + 3*2*64 + (4*2+1)*128 + (6*2+1)*256 + (3*2+1)*512 = 8,512; resnet18 4,800.
        ModelState m = ModelState.Of(ResNetConfig.Parse(model, stem, 64));
        Assert.Equal(parameters, m.ParameterCount);
        Assert.Equal(buffers, m.BufferCount);
        Assert.Equal(4 * parameters, m.ParameterBytes);
    }

    [Theory]
    [InlineData(34, "imagenet", 4)]
    [InlineData(18, "cifar", 3)]
    public void Analytic_counts_match_the_built_model(int depth, string stem, int width)
    {
        var config = new ResNetConfig(depth, stem, width);
        ModelState m = ModelState.Of(config);
        TestDevice.Use(dev =>
        {
            using var net = new ResNet(dev, config);
            Assert.Equal(net.Store.ParameterCount, m.ParameterCount);
            Assert.Equal(net.Store.BufferCount, m.BufferCount);
            Assert.Equal(net.Store.Parameters.Select(p => p.Length), m.ParameterLengths);
        });
    }

    /// <summary>The ZeRO paper's communication volumes: ZeRO-2 moves DDP's bytes (a reduce-scatter and an all-gather are one all-reduce), ZeRO-1 and FSDP 1.5x.</summary>
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void Sharded_modes_move_the_zero_papers_bytes(int n)
    {
        var s = new ScalingSettings(Devices: n);
        ScalingPrediction p = ScalingModel.Predict(SingleStep.FromEpoch(10, ResNet34, s, Link.Preset("pcie4")), ResNet34, s, Link.Preset("pcie4"));
        double Comm(ModePrediction m) => new[] { "grad_sync", "reduce_scatter", "all_gather" }.Sum(ph => (double)m.Phases[ph].BytesPerStep);
        double ddp = Comm(p.Ddp);
        Assert.Equal(2.0 * (n - 1) / n * ResNet34.ParameterBytes, ddp, 0);
        var sharded = p.Sharded.ToDictionary(m => m.Mode);
        Assert.Equal(new[] { "zero1", "zero2", "fsdp" }, p.Sharded.Select(m => m.Mode));
        Assert.Equal(1.5, Comm(sharded["zero1"]) / ddp, 3);
        Assert.Equal(1.0, Comm(sharded["zero2"]) / ddp, 3);
        Assert.Equal(1.5, Comm(sharded["fsdp"]) / ddp, 3);
        // Compute is DDP's; the optimizer steps on 1/N of the parameters.
        foreach (ModePrediction m in p.Sharded)
        {
            Assert.Equal(p.Ddp["forward"], m["forward"]);
            Assert.Equal(p.Ddp["optimizer"] / n, m["optimizer"], 9);
        }
    }

    [Fact]
    public void Fsdp_units_cover_the_model_as_the_engine_cuts_them()
    {
        var config = new ResNetConfig(34, "imagenet", 4);
        ModelState m = ModelState.Of(config);
        TestDevice.Use(dev =>
        {
            using var net = new ResNet(dev, config);
            var units = net.Store.Parameters.GroupBy(p => Engine.Nn.Parallel.FullyShardedDataParallel.UnitOf(p.Name)).Select(g => g.Sum(p => p.Length)).ToList();
            Assert.Equal(units, m.UnitLengths);
            Assert.Equal(1 + 16 + 1, m.UnitLengths.Count); // stem, 3+4+6+3 BasicBlocks, head
        });
    }

    /// <summary>An FSDP pass with no compute to hide under exposes every gather; with ample compute only the first one.</summary>
    [Fact]
    public void Fsdp_prefetch_hides_all_but_the_first_gather_under_enough_compute()
    {
        long[] units = { 100, 200, 300 };
        double Seconds(long b) => b / 1000.0;
        var none = ScalingModel.FsdpPass(units, 0, Seconds, null);
        Assert.Equal(0.6, none.GatherExposed, 9);
        var ample = ScalingModel.FsdpPass(units, 100, Seconds, Seconds);
        Assert.Equal(0.1, ample.GatherExposed, 9);
        Assert.Equal(1.2, ample.Busy, 9);
        Assert.True(ample.ReduceExposed > 0, "the last unit's reduce-scatter runs after the pass");
    }

    [Fact]
    public void Byte_counts_per_algorithm_match_hand_counts()
    {
        const long p = 21_289_802, b = 17_024;
        Assert.Equal(1 * (p + b) * 4, ScalingModel.DpReplicateBytes(2, ResNet34));
        Assert.Equal(3 * (p + b) * 4, ScalingModel.DpReplicateBytes(4, ResNet34));
        Assert.Equal(1 * p * 4, ScalingModel.DpReduceBytes(2, ResNet34));
        Assert.Equal(7 * p * 4, ScalingModel.DpReduceBytes(8, ResNet34));
        Assert.Equal(p * 4.0, ScalingModel.RingBytesPerRank(2, p * 4), 6);           // 2(N-1)/N = 1
        Assert.Equal(1.5 * p * 4, ScalingModel.RingBytesPerRank(4, p * 4), 6);       // 2*3/4
        Assert.Equal(0, ScalingModel.RingBytesPerRank(1, p * 4));
        Assert.Equal(512L * (3 * 32 * 32 * 4 + 4), ScalingModel.DpInputScatterBytes(2, 512, 3 * 32 * 32 * 4));
        Assert.Equal(3L * 512 * 10 * 4, ScalingModel.DpOutputBytes(4, 512, 10));
        Assert.Equal(b * 4, ScalingModel.DdpBroadcastBytes(2, ResNet34));
        Assert.Equal(0, ScalingModel.DdpBroadcastBytes(1, ResNet34));
    }

    [Fact]
    public void Prediction_charges_those_bytes_to_the_engines_phases()
    {
        var s = new ScalingSettings(Devices: 3);
        Link link = Link.Preset("pcie4");
        ScalingPrediction pr = ScalingModel.Predict(SingleStep.FromEpoch(6.0, ResNet34, s, link), ResNet34, s, link);
        Assert.Equal(ScalingModel.DpReplicateBytes(3, ResNet34), pr.Dp.Phases["replicate"].BytesPerStep);
        Assert.Equal(ScalingModel.DpReduceBytes(3, ResNet34), pr.Dp.Phases["grad_sync"].BytesPerStep);
        Assert.Equal(ScalingModel.DpOutputBytes(3, 512, 10), pr.Dp.Phases["gather"].BytesPerStep);
        Assert.Equal((long)ScalingModel.RingBytesPerRank(3, ResNet34.ParameterBytes), pr.Ddp.Phases["grad_sync"].BytesPerStep);
        Assert.Equal(50_000 / 512, pr.Single.Steps);
        Assert.Equal(50_000 / (512 * 3), pr.Dp.Steps);
        Assert.Equal(50_000 / (512 * 3), pr.Ddp.Steps);
    }

    [Fact]
    public void Buckets_hold_every_gradient_byte_first_one_at_least_1_MiB()
    {
        foreach (double cap in new[] { 1.0, 5.0, 25.0, 1000.0 })
        {
            IReadOnlyList<long> buckets = ScalingModel.Buckets(ResNet34, cap);
            Assert.Equal(ResNet34.ParameterBytes, buckets.Sum());
            Assert.True(buckets[0] >= 1024 * 1024);
            Assert.All(buckets.Take(buckets.Count - 1).Skip(1), x => Assert.True(x >= cap * 1024 * 1024));
        }
    }

    [Fact]
    public void Split_of_a_given_epoch_adds_up_to_the_step()
    {
        var s = new ScalingSettings();
        SingleStep step = SingleStep.FromEpoch(6.302, ResNet34, s, Link.Preset("pcie4"));
        Assert.Equal(6.302 / (50_000 / 512), step.Seconds, 12);
        Assert.Equal(2 * step["forward"], step["backward"], 12);
    }

    [Theory]
    [InlineData("pcie3")]
    [InlineData("nvlink")]
    public void One_device_predicts_dp_and_ddp_equal_to_single(string preset)
    {
        foreach (bool serial in new[] { true, false })
        {
            var s = new ScalingSettings(Devices: 1, DpSerialDispatch: serial);
            Link link = Link.Preset(preset);
            ScalingPrediction pr = ScalingModel.Predict(SingleStep.FromEpoch(6.302, ResNet34, s, link), ResNet34, s, link);
            Assert.Equal(pr.Single.StepSeconds, pr.Dp.StepSeconds, 12);
            Assert.Equal(pr.Single.StepSeconds, pr.Ddp.StepSeconds, 12);
            Assert.Equal(pr.Single.EpochSeconds, pr.Dp.EpochSeconds, 12);
            Assert.Equal(pr.Single.EpochSeconds, pr.Ddp.EpochSeconds, 12);
            Assert.Equal(0, pr.Ddp.HiddenSeconds);
        }
    }

    [Fact]
    public void More_bandwidth_never_predicts_slower()
    {
        var single = SingleStep.FromEpoch(6.302, ResNet34, new ScalingSettings(), Link.Preset("pcie4"));
        foreach (int n in new[] { 2, 3, 8 })
        {
            foreach (bool p2p in new[] { false, true })
            {
                foreach (bool overlap in new[] { false, true })
                {
                    var s = new ScalingSettings(Devices: n, Overlap: overlap);
                    ScalingPrediction? previous = null;
                    foreach (double bw in new[] { 0.5, 1, 2, 4, 8, 12, 16, 24, 48, 100, 300, 900 })
                    {
                        ScalingPrediction pr = ScalingModel.Predict(single, ResNet34, s, new Link("test", bw, 10, p2p));
                        if (previous is not null)
                        {
                            Assert.True(pr.Dp.StepSeconds <= previous.Dp.StepSeconds, $"dp slower at {bw} GB/s, N={n}");
                            Assert.True(pr.Ddp.StepSeconds <= previous.Ddp.StepSeconds, $"ddp slower at {bw} GB/s, N={n}");
                        }
                        previous = pr;
                    }
                }
            }
        }
    }

    [Fact]
    public void Peer_to_peer_never_predicts_slower_than_through_the_host()
    {
        var s = new ScalingSettings(Devices: 4);
        var single = SingleStep.FromEpoch(6.302, ResNet34, s, Link.Preset("pcie4"));
        ScalingPrediction host = ScalingModel.Predict(single, ResNet34, s, new Link("host", 24, 10, false));
        ScalingPrediction p2p = ScalingModel.Predict(single, ResNet34, s, new Link("p2p", 24, 10, true));
        Assert.True(p2p.Dp.StepSeconds < host.Dp.StepSeconds);
        Assert.True(p2p.Ddp.StepSeconds <= host.Ddp.StepSeconds);
    }

    [Fact]
    public void Overlap_never_makes_ddp_slower_than_no_overlap()
    {
        var single = SingleStep.FromEpoch(6.302, ResNet34, new ScalingSettings(), Link.Preset("pcie4"));
        foreach (int n in new[] { 2, 4, 8 })
        {
            foreach (double bucket in new[] { 0.5, 5, 25, 100 })
            {
                foreach (double bw in new[] { 0.5, 4, 24, 300 })
                {
                    var link = new Link("test", bw, 10, false);
                    var overlapped = ScalingModel.Predict(single, ResNet34, new ScalingSettings(Devices: n, BucketMb: bucket), link).Ddp;
                    var serial = ScalingModel.Predict(single, ResNet34, new ScalingSettings(Devices: n, BucketMb: bucket, Overlap: false), link).Ddp;
                    Assert.True(overlapped.StepSeconds <= serial.StepSeconds, $"N={n} bucket {bucket} MiB {bw} GB/s");
                    Assert.Equal(0, serial.HiddenSeconds);
                    // Overlap only moves all-reduce time from exposed to hidden; it never adds any.
                    Assert.Equal(serial["grad_sync"], overlapped["grad_sync"] + overlapped.HiddenSeconds, 12);
                }
            }
        }
    }

    [Fact]
    public void An_emulated_rate_is_ddps_network_at_tcps_share_of_the_rate_with_tbfs_burst()
    {
        (Link devices, Link? network) = Link.Resolve("8mbit");
        Assert.Equal(Link.Preset("pcie4"), devices); // DP's copies stay inside one machine
        Assert.NotNull(network);
        // 8 Mbit/s = 1,000,000 frame bytes/s; TCP carries 1448 of each 1514-byte frame.
        Assert.Equal(1e6 * 1448 / 1514 / 1e9, network.BandwidthGBs, 15);
        Assert.Equal(64 * 1024 * 1448.0 / 1514, network.BurstBytes, 6); // tbf's bucket at this rate: its 64 KiB floor
        Assert.Equal(0, network.LatencyUs);
        Assert.Equal(1, network.Crossings);

        Assert.Equal((Link.Preset("nvlink"), (Link?)null), Link.Resolve("NVLink"));
        Assert.Contains("a rate such as 8mbit", Assert.Throws<ArgumentException>(() => Link.Resolve("fast")).Message);
    }

    [Fact]
    public void A_shaped_link_passes_its_burst_at_once_and_refills_only_while_idle()
    {
        var link = new Link("shaped", 0.001, 0, true, BurstBytes: 50_000); // 1 MB/s
        long[] buckets = [100_000, 100_000];
        // Back to back after backward: one burst for both, (200 KB - 50 KB) at 1 MB/s.
        Assert.Equal((0.15, 0.0), Round(ScalingModel.DdpSync(buckets, 10, 2, link, overlap: false)));
        // A long backward: each bucket finds the link idle long enough to refill, 50 ms each; the last is exposed.
        Assert.Equal((0.05, 0.05), Round(ScalingModel.DdpSync(buckets, 10, 2, link, overlap: true)));
        // Backward 120 ms: bucket 1 ready at 60 ms ends at 110 ms; 10 ms idle refill 10 KB, so bucket 2 takes 90 ms from 120 ms.
        Assert.Equal((0.09, 0.05), Round(ScalingModel.DdpSync(buckets, 0.12, 2, link, overlap: true)));
        // Without a burst: the plain ring time, 200 KB at 1 MB/s.
        Assert.Equal((0.2, 0.0), Round(ScalingModel.DdpSync(buckets, 10, 2, link with { BurstBytes = 0 }, overlap: false)));
    }

    private static (double, double) Round((double A, double B) x) => (Math.Round(x.A, 9), Math.Round(x.B, 9));

    [Fact]
    public void Serial_dispatch_costs_kernels_times_launch_times_extra_replicas()
    {
        var s = new ScalingSettings(Devices: 3, KernelsPerStep: 400, LaunchUs: 20);
        Link link = Link.Preset("pcie4");
        var single = SingleStep.FromEpoch(6.302, ResNet34, s, link);
        ModePrediction serial = ScalingModel.Predict(single, ResNet34, s, link).Dp;
        ModePrediction parallel = ScalingModel.Predict(single, ResNet34, s with { DpSerialDispatch = false }, link).Dp;
        Assert.Equal(400 * 20e-6 * 2, serial.StepSeconds - parallel.StepSeconds, 12);
    }

    [Fact]
    public void Bandwidth_search_finds_where_a_falling_curve_meets_the_target()
    {
        double? bw = SeedCheck.BandwidthFor(x => 1 + 10 / x, 3);
        Assert.NotNull(bw);
        Assert.Equal(5, bw!.Value, 6);
        Assert.Null(SeedCheck.BandwidthFor(x => 4 + 10 / x, 3));
    }
}
