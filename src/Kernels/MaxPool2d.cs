using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// 2-D max pooling over NCHW (torchvision's stem uses 3x3, stride 2, pad 1). Forward records, per
/// output, the flat index h*W + w of its maximum inside the (n, c) plane; padding acts as -inf, and
/// the first maximum in row-major window order wins, as in PyTorch (a NaN in the window wins too).
/// Backward is a gather: every input element sums dy over the few windows that can contain it and
/// whose argmax is it, so there are no atomics and the result is deterministic.
/// </summary>
public static class MaxPool2d
{
    // ---- kernels ----

    /// <summary>Grid-stride over the output elements.</summary>
    [KernelName("max_pool2d_fwd")]
    internal static void ForwardKernel(Index1D index, ArrayView<float> x, ArrayView<float> y, ArrayView<int> argmax, Pool2dShape s, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int outH = s.OutH, outW = s.OutW;
            int ow = i % outW;
            int rest = i / outW;
            int oh = rest % outH;
            int plane = rest / outH;

            int hStart = oh * s.Stride - s.Pad, wStart = ow * s.Stride - s.Pad;
            int hEnd = XMath.Min(hStart + s.Kernel, s.H), wEnd = XMath.Min(wStart + s.Kernel, s.W);
            hStart = XMath.Max(hStart, 0);
            wStart = XMath.Max(wStart, 0);

            int planeBase = plane * s.H * s.W;
            float best = float.NegativeInfinity;
            int bestIndex = hStart * s.W + wStart;
            for (int h = hStart; h < hEnd; h++)
            {
                for (int w = wStart; w < wEnd; w++)
                {
                    int k = h * s.W + w;
                    float v = x[planeBase + k];
                    // Strictly greater keeps the first maximum; NaN propagates as in PyTorch.
                    if (v > best || IsNaN(v))
                    {
                        best = v;
                        bestIndex = k;
                    }
                }
            }
            y[i] = best;
            argmax[i] = bestIndex;
        }
    }

    /// <summary>
    /// The NaN test as an unordered compare (setp.neu.f32): float.IsNaN compiles to testp.notanumber.f32, which
    /// GPGPU-Sim cannot run; on a GPU both are one instruction with the same answer.
    /// </summary>
#pragma warning disable CS1718 // comparing v with itself is the point
    private static bool IsNaN(float v) => v != v;
#pragma warning restore CS1718

    /// <summary>Grid-stride over the input elements; each scans the output windows that can contain it.</summary>
    [KernelName("max_pool2d_bwd")]
    internal static void BackwardKernel(Index1D index, ArrayView<float> dy, ArrayView<int> argmax, ArrayView<float> dx, Pool2dShape s, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            int outH = s.OutH, outW = s.OutW;
            int w = i % s.W;
            int rest = i / s.W;
            int h = rest % s.H;
            int plane = rest / s.H;

            // Windows oh with oh*Stride - Pad <= h <= oh*Stride - Pad + Kernel - 1.
            int ohStart = h + s.Pad < s.Kernel ? 0 : (h + s.Pad - s.Kernel) / s.Stride + 1;
            int ohEnd = XMath.Min((h + s.Pad) / s.Stride + 1, outH);
            int owStart = w + s.Pad < s.Kernel ? 0 : (w + s.Pad - s.Kernel) / s.Stride + 1;
            int owEnd = XMath.Min((w + s.Pad) / s.Stride + 1, outW);

            int target = h * s.W + w;
            int outBase = plane * outH * outW;
            float sum = 0f;
            for (int oh = ohStart; oh < ohEnd; oh++)
            {
                for (int ow = owStart; ow < owEnd; ow++)
                {
                    int o = outBase + oh * outW + ow;
                    if (argmax[o] == target) sum += dy[o];
                }
            }
            dx[i] = sum;
        }
    }

    // ---- launchers ----

    /// <summary>y = max over each window; argmax = flat index (h*W + w within the plane) of the first maximum.</summary>
    public static void Forward(Device dev, ArrayView<float> x, ArrayView<float> y, ArrayView<int> argmax, in Pool2dShape s)
    {
        using var profile = dev.Profile("maxpool_fwd", OpCost.MaxPoolForward(s));
        s.Validate();
        Check.AtLeast("MaxPool2d.Forward", "x", x, s.InputLength);
        Check.AtLeast("MaxPool2d.Forward", "y", y, s.OutputLength);
        Check.AtLeast("MaxPool2d.Forward", "argmax", argmax, s.OutputLength);
        int count = checked((int)s.OutputLength), threads = dev.GridStrideThreads(count);
        dev.Kernel("max_pool2d_fwd", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, Pool2dShape, int, int>(ForwardKernel))
            (dev.Stream, threads, x, y, argmax, s, count, threads);
    }

    /// <summary>dx (every element overwritten) = sum of dy over the windows whose argmax is that element.</summary>
    public static void Backward(Device dev, ArrayView<float> dy, ArrayView<int> argmax, ArrayView<float> dx, in Pool2dShape s)
    {
        using var profile = dev.Profile("maxpool_bwd", OpCost.MaxPoolBackward(s));
        s.Validate();
        Check.AtLeast("MaxPool2d.Backward", "dy", dy, s.OutputLength);
        Check.AtLeast("MaxPool2d.Backward", "argmax", argmax, s.OutputLength);
        Check.AtLeast("MaxPool2d.Backward", "dx", dx, s.InputLength);
        int count = checked((int)s.InputLength), threads = dev.GridStrideThreads(count);
        dev.Kernel("max_pool2d_bwd", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, Pool2dShape, int, int>(BackwardKernel))
            (dev.Stream, threads, dy, argmax, dx, s, count, threads);
    }

    // ---- float64 references ----

    public static class Reference
    {
        public static (double[] Y, int[] Argmax) Forward(double[] x, Pool2dShape s)
        {
            s.Validate();
            int outH = s.OutH, outW = s.OutW;
            var y = new double[s.OutputLength];
            var argmax = new int[s.OutputLength];
            for (int plane = 0; plane < s.N * s.C; plane++)
            {
                for (int oh = 0; oh < outH; oh++)
                {
                    for (int ow = 0; ow < outW; ow++)
                    {
                        double best = double.NegativeInfinity;
                        int bestIndex = -1;
                        for (int kh = 0; kh < s.Kernel; kh++)
                        {
                            for (int kw = 0; kw < s.Kernel; kw++)
                            {
                                int h = oh * s.Stride - s.Pad + kh, w = ow * s.Stride - s.Pad + kw;
                                if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
                                double v = x[plane * s.H * s.W + h * s.W + w];
                                if (bestIndex < 0 || v > best || double.IsNaN(v))
                                {
                                    best = v;
                                    bestIndex = h * s.W + w;
                                }
                            }
                        }
                        int o = (plane * outH + oh) * outW + ow;
                        y[o] = best;
                        argmax[o] = bestIndex;
                    }
                }
            }
            return (y, argmax);
        }

        /// <summary>Scatters each dy into the input element its argmax names.</summary>
        public static double[] Backward(double[] dy, int[] argmax, Pool2dShape s)
        {
            s.Validate();
            int outPlane = s.OutH * s.OutW;
            var dx = new double[s.InputLength];
            for (int o = 0; o < s.OutputLength; o++)
            {
                dx[o / outPlane * s.H * s.W + argmax[o]] += dy[o];
            }
            return dx;
        }
    }
}
