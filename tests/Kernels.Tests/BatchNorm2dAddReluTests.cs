using Engine.Kernels;
using Engine.Tests;

namespace Engine.Kernels.Tests;

public class BatchNorm2dAddReluTests
{
    [Fact]
    public void Launchers_reject_bad_arguments() => TestDevice.Use(dev =>
    {
        const int n = 2, c = 3, hw = 4, len = n * c * hw;
        using var x = dev.Allocate<float>(len);
        using var id = dev.Allocate<float>(len);
        using var y = dev.Allocate<float>(len);
        using var dy = dev.Allocate<float>(len);
        using var dx = dev.Allocate<float>(len);
        using var di = dev.Allocate<float>(len);
        using var two = dev.Allocate<float>(2 * len);
        using var shortV = dev.Allocate<float>(len - 1);
        using var ch = dev.Allocate<float>(c);
        using var shortCh = dev.Allocate<float>(c - 1);
        var v = ch.View;
        var shifted = two.View.SubView(1, len);

        void Throws(Action launch, params string[] parts)
        {
            var e = Assert.Throws<ArgumentException>(launch);
            foreach (string p in parts) Assert.Contains(p, e.Message);
        }

        Throws(() => BatchNorm2d.ForwardTrainAddRelu(dev, x.View, shortV.View, v, v, y.View, v, v, v, v, n, c, hw), "BatchNorm2d.ForwardTrainAddRelu", "'identity'");
        Throws(() => BatchNorm2d.ForwardTrainAddRelu(dev, x.View, id.View, v, v, x.View, v, v, v, v, n, c, hw), "'y' overlaps 'x'");
        Throws(() => BatchNorm2d.ForwardTrainAddRelu(dev, x.View, id.View, v, v, id.View, v, v, v, v, n, c, hw), "'y' overlaps 'identity'");
        Throws(() => BatchNorm2d.ForwardTrainAddRelu(dev, x.View, id.View, v, shortCh.View, y.View, v, v, v, v, n, c, hw), "'beta'");
        Throws(() => BatchNorm2d.ForwardTrainAddRelu(dev, x.View, id.View, v, v, y.View, v, v, v, v, 1, c, 1), "more than one value per channel");
        Throws(() => BatchNorm2d.ForwardEvalAddRelu(dev, x.View, id.View, v, v, v, shortCh.View, y.View, n, c, hw), "BatchNorm2d.ForwardEvalAddRelu", "'runningVar'");
        Throws(() => BatchNorm2d.ForwardEvalAddRelu(dev, two.View.SubView(0, len), id.View, v, v, v, v, shifted, n, c, hw), "'y' overlaps 'x' without being the same");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, v, y.View, di.View, v, v, n, c, hw), "'dx' overlaps 'y'");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, v, dy.View, di.View, v, v, n, c, hw), "'dx' overlaps 'dy'");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, v, dx.View, dx.View, v, v, n, c, hw), "'dx' overlaps 'dIdentity'");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, v, dx.View, y.View, v, v, n, c, hw), "'dIdentity' overlaps 'y'");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, two.View.SubView(0, len), v, v, v, dx.View, shifted, v, v, n, c, hw),
            "'dIdentity' overlaps 'dy' without being the same");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, v, dx.View, shortV.View, v, v, n, c, hw), "BatchNorm2d.BackwardAddRelu", "'dIdentity'");
        Throws(() => BatchNorm2d.BackwardAddRelu(dev, x.View, y.View, dy.View, v, v, shortCh.View, dx.View, di.View, v, v, n, c, hw), "'saveInvStd'");
    });
}
