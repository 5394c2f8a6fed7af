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

    // ---- launchers ----

    /// <summary>y = a + b over <c>y.Length</c> elements (y may alias a or b).</summary>
    public static void Add(Device dev, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        using var profile = dev.Profile("add_fwd", OpCost.Binary(y.Length));
        Check.SameLength(nameof(Add), a, b, y);
        if (y.Length == 0) return;
        int count = checked((int)y.Length), threads = dev.GridStrideThreads(count);
        dev.Kernel("add_fwd", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(AddKernel))
            (dev.Stream, threads, a, b, y, count, threads);
    }

    /// <summary>y[i] = value.</summary>
    public static void Fill(Device dev, ArrayView<float> y, float value)
    {
        using var profile = dev.Profile("fill", OpCost.Unary(y.Length, reads: 0));
        if (y.Length == 0) return;
        int count = checked((int)y.Length), threads = dev.GridStrideThreads(count);
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

    /// <summary>y += x.</summary>
    public static void Accumulate(Device dev, ArrayView<float> y, ArrayView<float> x)
    {
        using var profile = dev.Profile("accumulate", OpCost.Binary(y.Length));
        Check.SameLength(nameof(Accumulate), y, x);
        if (y.Length == 0) return;
        int count = checked((int)y.Length), threads = dev.GridStrideThreads(count);
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
