using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Tests;

/// <summary>Random inputs, poisoned outputs and tolerance checks shared by the kernel tests.</summary>
public static class Numerics
{
    /// <summary>A fresh seed every run (printed on failure) so tests do not pass on one lucky input.</summary>
    public static Random NewRandom(out int seed)
    {
        seed = Random.Shared.Next();
        return new Random(seed);
    }

    public static float[] Uniform(Random rng, int n, float lo = -1f, float hi = 1f)
    {
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = lo + (hi - lo) * (float)rng.NextDouble();
        return a;
    }

    public static double[] ToDouble(float[] a) => Array.ConvertAll(a, v => (double)v);

    /// <summary>An output buffer filled with NaN, so a kernel that skips an element is caught.</summary>
    public static MemoryBuffer1D<float, Stride1D.Dense> Poisoned(Device dev, long n)
    {
        var buffer = dev.Allocate<float>(n);
        Elementwise.Fill(dev, buffer.View, float.NaN);
        return buffer;
    }

    /// <summary>
    /// Asserts |actual - expected| &lt;= atol + rtol * |expected| element-wise (llm.c's check), naming the
    /// first bad index, and that nothing is NaN.
    /// </summary>
    /// <param name="slack">Per element, added to atol: a rounding bound for ill-conditioned outputs.</param>
    public static void AssertClose(double[] expected, float[] actual, double rtol = 1e-4, double atol = 1e-5, string what = "", int seed = 0, double[]? slack = null)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double e = expected[i], a = actual[i];
            if (double.IsNaN(a) || Math.Abs(a - e) > atol + (slack?[i] ?? 0) + rtol * Math.Abs(e))
            {
                Assert.Fail($"{what}[{i}]: expected {e:R}, got {a:R} (rtol {rtol}, atol {atol}, seed {seed}, {expected.Length} elements)");
            }
        }
    }

    /// <summary>
    /// Central finite differences of a scalar function f(x) = sum(g * F(x)) with respect to x[i] for a
    /// few indices, compared with the analytic gradient. Runs entirely in float64 on the references.
    /// </summary>
    public static void AssertFiniteDifference(Func<double[], double> f, double[] x, double[] analytic, Random rng, int samples = 12, double h = 1e-6, double tol = 1e-5, string what = "")
    {
        Assert.Equal(x.Length, analytic.Length);
        int count = Math.Min(samples, x.Length);
        for (int s = 0; s < count; s++)
        {
            int i = count == x.Length ? s : rng.Next(x.Length);
            double keep = x[i];
            x[i] = keep + h;
            double fp = f(x);
            x[i] = keep - h;
            double fm = f(x);
            x[i] = keep;
            double numeric = (fp - fm) / (2 * h);
            double scale = Math.Max(1.0, Math.Max(Math.Abs(numeric), Math.Abs(analytic[i])));
            if (Math.Abs(numeric - analytic[i]) > tol * scale)
            {
                Assert.Fail($"{what}: d/dx[{i}] analytic {analytic[i]:R}, finite difference {numeric:R}");
            }
        }
    }

    public static double Dot(double[] a, double[] b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }
}
