using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>ReLU. Backward reads the forward OUTPUT (y &gt; 0 exactly where x &gt; 0), so the input need not be kept.</summary>
public static class Relu
{
    // ---- kernels ----

    [KernelName("relu_fwd")]
    internal static void ForwardKernel(Index1D index, ArrayView<float> x, ArrayView<float> y, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            float v = x[i];
            y[i] = v < 0f ? 0f : v; // NaN passes through, as in PyTorch, so divergence stays visible
        }
    }

    [KernelName("relu_bwd")]
    internal static void BackwardKernel(Index1D index, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            dx[i] = y[i] > 0f ? dy[i] : 0f;
        }
    }

    // ---- launchers ----

    /// <summary>y = max(x, 0); y may alias x.</summary>
    public static void Forward(Device dev, ArrayView<float> x, ArrayView<float> y)
    {
        using var profile = dev.Profile("relu_fwd", OpCost.ReluForward(x.Length));
        Check.SameLength("Relu.Forward", x, y);
        if (y.Length == 0) return;
        int count = checked((int)y.Length), threads = dev.GridStrideThreads(count);
        dev.Kernel("relu_fwd", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(ForwardKernel))
            (dev.Stream, threads, x, y, count, threads);
    }

    /// <summary>dx = y &gt; 0 ? dy : 0, with y the forward output; dx may alias dy.</summary>
    public static void Backward(Device dev, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
    {
        using var profile = dev.Profile("relu_bwd", OpCost.ReluBackward(y.Length));
        Check.SameLength("Relu.Backward", y, dy, dx);
        if (dx.Length == 0) return;
        int count = checked((int)dx.Length), threads = dev.GridStrideThreads(count);
        dev.Kernel("relu_bwd", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(BackwardKernel))
            (dev.Stream, threads, y, dy, dx, count, threads);
    }

    // ---- float64 references ----

    public static class Reference
    {
        public static double[] Forward(double[] x)
        {
            var y = new double[x.Length];
            for (int i = 0; i < x.Length; i++) y[i] = x[i] < 0 ? 0 : x[i];
            return y;
        }

        public static double[] Backward(double[] y, double[] dy)
        {
            var dx = new double[y.Length];
            for (int i = 0; i < y.Length; i++) dx[i] = y[i] > 0 ? dy[i] : 0;
            return dx;
        }
    }
}
