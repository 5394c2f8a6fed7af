using Engine.Kernels;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class BatchNorm2dReluTests
{
    [Fact]
    public void Launchers_reject_bad_arguments() => TestDevice.Use(dev =>
    {
        const int n = 2, c = 3, hw = 4;
        using var x = dev.Allocate<float>(n * c * hw);
        using var y = dev.Allocate<float>(n * c * hw);
        using var dy = dev.Allocate<float>(n * c * hw);
        using var dx = dev.Allocate<float>(n * c * hw);
        using var shortY = dev.Allocate<float>(n * c * hw - 1);
        using var ch = dev.Allocate<float>(c);
        using var shortCh = dev.Allocate<float>(c - 1);
        var v = ch.View;

        var e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardTrainRelu(dev, x.View, v, v, shortY.View, v, v, v, v, n, c, hw));
        Assert.Contains("BatchNorm2d.ForwardTrainRelu", e.Message);
        Assert.Contains("'y'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardTrainRelu(dev, x.View, v, v, x.View, v, v, v, v, n, c, hw));
        Assert.Contains("overlaps", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.ForwardEvalRelu(dev, x.View, v, v, v, shortCh.View, y.View, n, c, hw));
        Assert.Contains("BatchNorm2d.ForwardEvalRelu", e.Message);
        Assert.Contains("'runningVar'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.BackwardRelu(dev, x.View, y.View, dy.View, v, v, v, y.View, v, v, n, c, hw));
        Assert.Contains("'dx' overlaps 'y'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.BackwardRelu(dev, x.View, y.View, dy.View, v, v, v, dy.View, v, v, n, c, hw));
        Assert.Contains("'dx' overlaps 'dy'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.BackwardRelu(dev, x.View, shortY.View, dy.View, v, v, v, dx.View, v, v, n, c, hw));
        Assert.Contains("BatchNorm2d.BackwardRelu", e.Message);
        Assert.Contains("'y'", e.Message);
        e = Assert.Throws<ArgumentException>(() => BatchNorm2d.BackwardRelu(dev, x.View, y.View, dy.View, v, v, shortCh.View, dx.View, v, v, n, c, hw));
        Assert.Contains("'saveInvStd'", e.Message);
    });
}
