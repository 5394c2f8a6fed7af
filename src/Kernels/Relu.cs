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

    private static float R(float v) => v < 0f ? 0f : v;

    /// <summary>Float4 version: <paramref name="x4"/>/<paramref name="y4"/> are the float4 body of x/y, and the last n % 4 elements go one per thread.</summary>
    [KernelName("relu_fwd_v4")]
    internal static void ForwardKernel4(Index1D index, ArrayView<Float4> x4, ArrayView<Float4> y4, ArrayView<float> x, ArrayView<float> y, int n, int stride)
    {
        int n4 = n >> 2;
        for (int i = index; i < n4; i += stride)
        {
            Float4 v = x4[i];
            y4[i] = new Float4(R(v.X), R(v.Y), R(v.Z), R(v.W));
        }
        for (int t = (n4 << 2) + index; t < n; t += stride) y[t] = R(x[t]);
    }

    [KernelName("relu_bwd_v4")]
    internal static void BackwardKernel4(Index1D index, ArrayView<Float4> y4, ArrayView<Float4> dy4, ArrayView<Float4> dx4,
        ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, int n, int stride)
    {
        int n4 = n >> 2;
        for (int i = index; i < n4; i += stride)
        {
            Float4 m = y4[i], g = dy4[i];
            dx4[i] = new Float4(m.X > 0f ? g.X : 0f, m.Y > 0f ? g.Y : 0f, m.Z > 0f ? g.Z : 0f, m.W > 0f ? g.W : 0f);
        }
        for (int t = (n4 << 2) + index; t < n; t += stride) dx[t] = y[t] > 0f ? dy[t] : 0f;
    }

    // ---- launchers ----

    /// <summary>y = max(x, 0); y may alias x. Float4 loads when the views allow (<see cref="Float4Dispatch.CanUse(long, ArrayView{float}, ArrayView{float})"/>).</summary>
    public static void Forward(Device dev, ArrayView<float> x, ArrayView<float> y)
    {
        if (Float4Dispatch.CanUse(y.Length, x, y)) ForwardFloat4(dev, x, y);
        else ForwardScalar(dev, x, y);
    }

    /// <summary><see cref="Forward"/> with 16-byte loads; every view must start on a 16-byte boundary.</summary>
    public static void ForwardFloat4(Device dev, ArrayView<float> x, ArrayView<float> y)
    {
        using var profile = dev.Profile("relu_fwd", OpCost.ReluForward(x.Length));
        Check.SameLength("Relu.Forward", x, y);
        Check.Aligned("Relu.Forward", x, y);
        if (y.Length == 0) return;
        int count = checked((int)y.Length), threads = Float4Dispatch.Threads(dev, count);
        dev.Kernel("relu_fwd_v4", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<Float4>, ArrayView<Float4>, ArrayView<float>, ArrayView<float>, int, int>(ForwardKernel4))
            (dev.Stream, threads, Float4Dispatch.Body(x, count), Float4Dispatch.Body(y, count), x, y, count, threads);
    }

    /// <summary><see cref="Forward"/> with one float per load, for any alignment.</summary>
    public static void ForwardScalar(Device dev, ArrayView<float> x, ArrayView<float> y)
    {
        using var profile = dev.Profile("relu_fwd", OpCost.ReluForward(x.Length));
        Check.SameLength("Relu.Forward", x, y);
        if (y.Length == 0) return;
        int count = checked((int)y.Length), threads = dev.GridStrideThreads(count);
        dev.Kernel("relu_fwd", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(ForwardKernel))
            (dev.Stream, threads, x, y, count, threads);
    }

    /// <summary>dx = y &gt; 0 ? dy : 0, with y the forward output; dx may alias dy. Float4 loads when the views allow.</summary>
    public static void Backward(Device dev, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
    {
        if (Float4Dispatch.CanUse(dx.Length, y, dy, dx)) BackwardFloat4(dev, y, dy, dx);
        else BackwardScalar(dev, y, dy, dx);
    }

    /// <summary><see cref="Backward"/> with 16-byte loads; every view must start on a 16-byte boundary.</summary>
    public static void BackwardFloat4(Device dev, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
    {
        using var profile = dev.Profile("relu_bwd", OpCost.ReluBackward(y.Length));
        Check.SameLength("Relu.Backward", y, dy, dx);
        Check.Aligned("Relu.Backward", y, dy, dx);
        if (dx.Length == 0) return;
        int count = checked((int)dx.Length), threads = Float4Dispatch.Threads(dev, count);
        dev.Kernel("relu_bwd_v4", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<Float4>, ArrayView<Float4>, ArrayView<Float4>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(BackwardKernel4))
            (dev.Stream, threads, Float4Dispatch.Body(y, count), Float4Dispatch.Body(dy, count), Float4Dispatch.Body(dx, count), y, dy, dx, count, threads);
    }

    /// <summary><see cref="Backward"/> with one float per load, for any alignment.</summary>
    public static void BackwardScalar(Device dev, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
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
