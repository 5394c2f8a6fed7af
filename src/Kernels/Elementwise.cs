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
    internal static void AddKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
        => y[i] = a[i] + b[i];

    [KernelName("fill")]
    internal static void FillKernel(Index1D i, ArrayView<float> y, float value)
        => y[i] = value;

    [KernelName("scale")]
    internal static void ScaleKernel(Index1D i, ArrayView<float> y, float alpha)
        => y[i] *= alpha;

    /// <summary>y += x (the reduce step of DP's gradient sum and of the host ring).</summary>
    [KernelName("accumulate")]
    internal static void AccumulateKernel(Index1D i, ArrayView<float> y, ArrayView<float> x)
        => y[i] += x[i];

    // ---- launchers ----

    /// <summary>y = a + b over <c>y.Length</c> elements (y may alias a or b).</summary>
    public static void Add(Device dev, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y)
    {
        Check.SameLength(nameof(Add), a, b, y);
        if (y.Length == 0) return;
        dev.Kernel("add_fwd", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(AddKernel))
            (dev.Stream, (int)y.Length, a, b, y);
    }

    /// <summary>y[i] = value.</summary>
    public static void Fill(Device dev, ArrayView<float> y, float value)
    {
        if (y.Length == 0) return;
        dev.Kernel("fill", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, float>(FillKernel))
            (dev.Stream, (int)y.Length, y, value);
    }

    /// <summary>y *= alpha.</summary>
    public static void Scale(Device dev, ArrayView<float> y, float alpha)
    {
        if (y.Length == 0) return;
        dev.Kernel("scale", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, float>(ScaleKernel))
            (dev.Stream, (int)y.Length, y, alpha);
    }

    /// <summary>y += x.</summary>
    public static void Accumulate(Device dev, ArrayView<float> y, ArrayView<float> x)
    {
        Check.SameLength(nameof(Accumulate), y, x);
        if (y.Length == 0) return;
        dev.Kernel("accumulate", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>>(AccumulateKernel))
            (dev.Stream, (int)y.Length, y, x);
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
