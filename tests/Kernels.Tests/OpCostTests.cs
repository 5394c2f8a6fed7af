using Engine.Kernels;
using Engine.Tests;

namespace Engine.Kernels.Tests;

/// <summary>The profiler's FLOP and byte counts against hand counts of a few ResNet layers.</summary>
public class OpCostTests
{
    [Fact]
    public void Conv_counts_equal_hand_counts()
    {
        // ResNet-34 layer1 3x3 conv at batch 512 on 8x8 maps: 512*64*8*8 outputs, 64*3*3 multiply-adds each.
        var s = new Conv2dShape(512, 64, 8, 8, 64, 3, 3, 1, 1);
        Assert.Equal(2L * 512 * 64 * 64 * 64 * 9, OpCost.Conv2d(s).Flops);
        Assert.Equal(4L * (512 * 64 * 64 + 64 * 64 * 9 + 512 * 64 * 64), OpCost.Conv2d(s).Bytes);
        // The stem: 7x7/2 pad 3 on 32x32 RGB -> 16x16.
        var stem = new Conv2dShape(512, 3, 32, 32, 64, 7, 7, 2, 3);
        Assert.Equal(2L * 512 * 64 * 16 * 16 * 3 * 49, OpCost.Conv2d(stem).Flops);
    }

    [Fact]
    public void Linear_bn_and_sgd_counts_equal_hand_counts()
    {
        Assert.Equal(2L * 512 * 512 * 10, OpCost.LinearForward(512, 512, 10).Flops);
        Assert.Equal(4L * (512 * 512 + 10 * 512 + 10 + 512 * 10), OpCost.LinearForward(512, 512, 10).Bytes);
        Assert.Equal(4L * 512 * 512 * 10 + 512 * 10, OpCost.LinearBackward(512, 512, 10).Flops);
        long bn = 512L * 64 * 16 * 16;
        Assert.Equal(12 * bn, OpCost.BatchNormTrain(bn).Bytes);
        Assert.Equal(20 * bn, OpCost.BatchNormBackward(bn).Bytes);
        Assert.Equal(0, OpCost.BatchNormTrain(bn).Flops);
        Assert.Equal(20L * 21_289_802, OpCost.Sgd(21_289_802).Bytes);
    }

    /// <summary>Two conv launches and two fills, profiled on the test device; returns the profiler's rows by name.</summary>
    private static Dictionary<string, KernelStat> ProfileTwoConvs(Device dev, out KernelProfiler profiler)
    {
        profiler = new KernelProfiler();
        dev.Profiler = profiler;
        try
        {
            var s = new Conv2dShape(2, 3, 7, 7, 4, 3, 3, 1, 1);
            using var x = dev.Allocate<float>(s.InputLength);
            using var w = dev.Allocate<float>(s.WeightLength);
            using var y = dev.Allocate<float>(s.OutputLength);
            Elementwise.Fill(dev, x.View, 1f);
            Elementwise.Fill(dev, w.View, 1f);
            Conv2d.Forward(dev, x.View, w.View, y.View, s);
            Conv2d.Forward(dev, x.View, w.View, y.View, s);
        }
        finally
        {
            dev.Profiler = null;
        }
        return profiler.Stats().ToDictionary(k => k.Name);
    }

    [Fact]
    public void Profiler_records_every_launch_with_its_cost() => TestDevice.Use(dev =>
    {
        var stats = ProfileTwoConvs(dev, out KernelProfiler profiler);
        Assert.Equal(2, stats["conv2d_fwd"].Calls);
        Assert.Equal(2 * OpCost.Conv2d(new Conv2dShape(2, 3, 7, 7, 4, 3, 3, 1, 1)).Flops, stats["conv2d_fwd"].Flops);
        Assert.Equal(2, stats["fill"].Calls);
        Assert.True(stats.Values.All(k => k.Seconds >= 0), "a negative time between a launch's markers");
        string table = KernelProfiler.Table(profiler.Stats(), stats.Values.Sum(k => k.Seconds) * 1.5, 1);
        Assert.Contains("Kernel_conv2d_fwd", table);
        Assert.Contains("other/launch", table);
    });

    [TimedDeviceFact]
    public void Profiler_measures_time_between_a_launch_s_markers() => TestDevice.Use(dev =>
    {
        var stats = ProfileTwoConvs(dev, out _);
        Assert.True(stats["conv2d_fwd"].Seconds > 0, $"two conv2d_fwd launches measured {stats["conv2d_fwd"].Seconds} s on {dev}");
    });
}
