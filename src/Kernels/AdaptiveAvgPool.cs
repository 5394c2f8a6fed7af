using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// Adaptive average pooling to 1x1 (ResNet's global average before the classifier): each of the
/// <c>nc</c> = N*C planes of <c>hw</c> elements becomes its mean.
/// </summary>
public static class AdaptiveAvgPool
{
    // ---- kernels ----

    /// <summary>Grid-stride over the planes; the planes at this point are small (ResNet: 1x1 to 7x7), so a serial sum is enough.</summary>
    [KernelName("adaptive_avg_pool_fwd")]
    internal static void ForwardKernel(Index1D index, ArrayView<float> x, ArrayView<float> y, int hw, float invHw, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int start = i * hw;
            float sum = 0f;
            for (int j = 0; j < hw; j++) sum += x[start + j];
            y[i] = sum * invHw;
        }
    }

    [KernelName("adaptive_avg_pool_bwd")]
    internal static void BackwardKernel(Index1D index, ArrayView<float> dy, ArrayView<float> dx, int hw, float invHw, int n, int stride)
    {
        for (int k = index; k < n; k += stride)
        {
            dx[k] = dy[k / hw] * invHw;
        }
    }

    // ---- launchers ----

    /// <summary>y[i] = mean of x[i*hw .. i*hw+hw) for i &lt; nc.</summary>
    public static void Forward(Device dev, ArrayView<float> x, ArrayView<float> y, int nc, int hw)
    {
        using var profile = dev.Profile("avgpool_fwd", OpCost.AvgPool(nc, hw));
        CheckShape("AdaptiveAvgPool.Forward", nc, hw);
        Check.AtLeast("AdaptiveAvgPool.Forward", "x", x, (long)nc * hw);
        Check.AtLeast("AdaptiveAvgPool.Forward", "y", y, nc);
        if (nc == 0) return;
        int count = nc, threads = dev.GridStrideThreads(count);
        dev.Kernel("adaptive_avg_pool_fwd", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, float, int, int>(ForwardKernel))
            (dev.Stream, threads, x, y, hw, 1f / hw, count, threads);
    }

    /// <summary>dx[i*hw + j] = dy[i] / hw (overwrites dx).</summary>
    public static void Backward(Device dev, ArrayView<float> dy, ArrayView<float> dx, int nc, int hw)
    {
        using var profile = dev.Profile("avgpool_bwd", OpCost.AvgPool(nc, hw));
        CheckShape("AdaptiveAvgPool.Backward", nc, hw);
        Check.AtLeast("AdaptiveAvgPool.Backward", "dy", dy, nc);
        Check.AtLeast("AdaptiveAvgPool.Backward", "dx", dx, (long)nc * hw);
        if (nc == 0) return;
        int count = checked((int)nc * hw), threads = dev.GridStrideThreads(count);
        dev.Kernel("adaptive_avg_pool_bwd", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, float, int, int>(BackwardKernel))
            (dev.Stream, threads, dy, dx, hw, 1f / hw, count, threads);
    }

    private static void CheckShape(string op, int nc, int hw)
    {
        if (nc < 0 || hw <= 0 || (long)nc * hw > int.MaxValue)
            throw new ArgumentException($"{op}: needs nc >= 0 and hw > 0 with nc*hw within int range, got nc={nc} hw={hw}.");
    }

    // ---- float64 references ----

    public static class Reference
    {
        public static double[] Forward(double[] x, int nc, int hw)
        {
            var y = new double[nc];
            for (int i = 0; i < nc; i++)
            {
                double s = 0;
                for (int j = 0; j < hw; j++) s += x[i * hw + j];
                y[i] = s / hw;
            }
            return y;
        }

        public static double[] Backward(double[] dy, int nc, int hw)
        {
            var dx = new double[nc * hw];
            for (int i = 0; i < nc; i++)
                for (int j = 0; j < hw; j++) dx[i * hw + j] = dy[i] / hw;
            return dx;
        }
    }
}
