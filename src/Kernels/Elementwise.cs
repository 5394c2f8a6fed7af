using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// Memory-bound element-wise ops: the residual add, and the fill / scale / accumulate kernels the
/// communicators and the training loop use. Each reads and writes every element once.
/// </summary>
public static class Elementwise
{
    // ---- kernels ----

    [KernelName("add_fwd")]
    internal static void AddKernel(Index1D index, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            y[i] = a[i] + b[i];
        }
    }

    [KernelName("fill")]
    internal static void FillKernel(Index1D index, ArrayView<float> y, float value, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            y[i] = value;
        }
    }

    [KernelName("scale")]
    internal static void ScaleKernel(Index1D index, ArrayView<float> y, float alpha, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            y[i] *= alpha;
        }
    }

    /// <summary>y += x (the reduce step of DP's gradient sum and of the host ring).</summary>
    [KernelName("accumulate")]
    internal static void AccumulateKernel(Index1D index, ArrayView<float> y, ArrayView<float> x, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            y[i] += x[i];
        }
    }

    // Float4 versions: the first three arguments are the float4 body of the views that follow, and the
    // last n % 4 elements go one per thread.

    [KernelName("add_fwd_v4")]
    internal static void AddKernel4(Index1D index, ArrayView<Float4> a4, ArrayView<Float4> b4, ArrayView<Float4> y4,
        ArrayView<float> a, ArrayView<float> b, ArrayView<float> y, int n, int stride)
    {
        int n4 = n >> 2;
        for (int i = index; i < n4; i += stride)
        {
            Float4 u = a4[i], v = b4[i];
            y4[i] = new Float4(u.X + v.X, u.Y + v.Y, u.Z + v.Z, u.W + v.W);
        }
        for (int t = (n4 << 2) + index; t < n; t += stride) y[t] = a[t] + b[t];
    }

    [KernelName("fill_v4")]
    internal static void FillKernel4(Index1D index, ArrayView<Float4> y4, ArrayView<float> y, float value, int n, int stride)
    {
        int n4 = n >> 2;
        for (int i = index; i < n4; i += stride)
        {
            y4[i] = new Float4(value, value, value, value);
        }
        for (int t = (n4 << 2) + index; t < n; t += stride) y[t] = value;
    }

    [KernelName("accumulate_v4")]
    internal static void AccumulateKernel4(Index1D index, ArrayView<Float4> y4, ArrayView<Float4> x4, ArrayView<float> y, ArrayView<float> x, int n, int stride)
    {
        int n4 = n >> 2;
        for (int i = index; i < n4; i += stride)
        {
            Float4 u = y4[i], v = x4[i];
            y4[i] = new Float4(u.X + v.X, u.Y + v.Y, u.Z + v.Z, u.W + v.W);
        }
        for (int t = (n4 << 2) + index; t < n; t += stride) y[t] += x[t];
    }

    // ---- launchers ----

    /// <summary>y = a + b over <c>y.Length</c> elements (y may alias a or b); float4 loads when the views allow.</summary>
    public static void Add(Device dev, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        if (Float4Dispatch.CanUse(y.Length, a, b, y)) AddFloat4(dev, a, b, y);
        else AddScalar(dev, a, b, y);
    }

    /// <summary><see cref="Add"/> with 16-byte loads; every view must start on a 16-byte boundary.</summary>
    public static void AddFloat4(Device dev, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        using var profile = dev.Profile("add_fwd", OpCost.Binary(y.Length));
        Check.SameLength(nameof(Add), a, b, y);
        Check.Aligned(nameof(Add), a, b, y);
        if (y.Length == 0) return;
        int count = checked((int)y.Length), threads = Float4Dispatch.Threads(dev, count);
        dev.Kernel("add_fwd_v4", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<Float4>, ArrayView<Float4>, ArrayView<Float4>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(AddKernel4))
            (dev.Stream, threads, Float4Dispatch.Body(a, count), Float4Dispatch.Body(b, count), Float4Dispatch.Body(y, count), a, b, y, count, threads);
    }

    /// <summary><see cref="Add"/> with one float per load, for any alignment.</summary>
    public static void AddScalar(Device dev, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        using var profile = dev.Profile("add_fwd", OpCost.Binary(y.Length));
        Check.SameLength(nameof(Add), a, b, y);
        if (y.Length == 0) return;
        int count = checked((int)y.Length), threads = dev.GridStrideThreads(count);
        dev.Kernel("add_fwd", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(AddKernel))
            (dev.Stream, threads, a, b, y, count, threads);
    }

    /// <summary>y[i] = value; float4 stores when y is aligned.</summary>
    public static void Fill(Device dev, ArrayView<float> y, float value)
    {
        using var profile = dev.Profile("fill", OpCost.Unary(y.Length, reads: 0));
        if (y.Length == 0) return;
        int count = checked((int)y.Length);
        if (Float4Dispatch.CanUse(count, y))
        {
            int threads4 = Float4Dispatch.Threads(dev, count);
            dev.Kernel("fill_v4", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<Float4>, ArrayView<float>, float, int, int>(FillKernel4))
                (dev.Stream, threads4, Float4Dispatch.Body(y, count), y, value, count, threads4);
            return;
        }
        int threads = dev.GridStrideThreads(count);
        dev.Kernel("fill", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, float, int, int>(FillKernel))
            (dev.Stream, threads, y, value, count, threads);
    }

    /// <summary>y *= alpha.</summary>
    public static void Scale(Device dev, ArrayView<float> y, float alpha)
    {
        using var profile = dev.Profile("scale", OpCost.Unary(y.Length, reads: 1));
        if (y.Length == 0) return;
        int count = checked((int)y.Length), threads = dev.GridStrideThreads(count);
        dev.Kernel("scale", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, float, int, int>(ScaleKernel))
            (dev.Stream, threads, y, alpha, count, threads);
    }

    /// <summary>y += x; float4 loads when both views are aligned.</summary>
    public static void Accumulate(Device dev, ArrayView<float> y, ArrayView<float> x)
    {
        using var profile = dev.Profile("accumulate", OpCost.Binary(y.Length));
        Check.SameLength(nameof(Accumulate), y, x);
        if (y.Length == 0) return;
        int count = checked((int)y.Length);
        if (Float4Dispatch.CanUse(count, y, x))
        {
            int threads4 = Float4Dispatch.Threads(dev, count);
            dev.Kernel("accumulate_v4", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<Float4>, ArrayView<Float4>, ArrayView<float>, ArrayView<float>, int, int>(AccumulateKernel4))
                (dev.Stream, threads4, Float4Dispatch.Body(y, count), Float4Dispatch.Body(x, count), y, x, count, threads4);
            return;
        }
        int threads = dev.GridStrideThreads(count);
        dev.Kernel("accumulate", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(AccumulateKernel))
            (dev.Stream, threads, y, x, count, threads);
    }

    // ---- float64 references ----

    public static class Reference
    {
        public static double[] Add(double[] a, double[] b)
        {
            var y = new double[a.Length];
            for (int i = 0; i < y.Length; i++) y[i] = a[i] + b[i];
            return y;
        }
    }
}
