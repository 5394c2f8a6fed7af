using System.Numerics;
using System.Runtime.InteropServices;

namespace Engine.Comm;

/// <summary>The host ring's reduction: plain SIMD loops over staged host memory.</summary>
internal static class HostMath
{
    /// <summary>y += x.</summary>
    public static void Add(Span<float> y, ReadOnlySpan<float> x)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && y.Length >= Vector<float>.Count)
        {
            Span<Vector<float>> vy = MemoryMarshal.Cast<float, Vector<float>>(y);
            ReadOnlySpan<Vector<float>> vx = MemoryMarshal.Cast<float, Vector<float>>(x[..y.Length]);
            for (int v = 0; v < vy.Length; v++)
            {
                vy[v] += vx[v];
            }
            i = vy.Length * Vector<float>.Count;
        }
        for (; i < y.Length; i++)
        {
            y[i] += x[i];
        }
    }

    /// <summary>y /= divisor (division, not a reciprocal product, so Avg is the rounded mean of the sum).</summary>
    public static void Divide(Span<float> y, float divisor)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && y.Length >= Vector<float>.Count)
        {
            Span<Vector<float>> vy = MemoryMarshal.Cast<float, Vector<float>>(y);
            var d = new Vector<float>(divisor);
            for (int v = 0; v < vy.Length; v++)
            {
                vy[v] /= d;
            }
            i = vy.Length * Vector<float>.Count;
        }
        for (; i < y.Length; i++)
        {
            y[i] /= divisor;
        }
    }

    /// <summary>y = 16-bit(y + x), element by element: a 16-bit sum as NCCL computes it (each addition rounded to the format).</summary>
    public static void Add16(Span<ushort> y, ReadOnlySpan<ushort> x, Engine.Kernels.Float16Format format)
    {
        for (int i = 0; i < y.Length; i++)
        {
            y[i] = Engine.Kernels.Float16.Encode(Engine.Kernels.Float16.Decode(y[i], format) + Engine.Kernels.Float16.Decode(x[i], format), format);
        }
    }
}
