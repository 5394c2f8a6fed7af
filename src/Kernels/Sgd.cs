using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// torch.optim.SGD (dampening 0, nesterov off) over a flat slice of parameters:
/// d = g + weightDecay * p; buf = d on the first step, else buf = momentum * buf + d; p -= lr * buf.
/// With momentum 0 the buffer is neither read nor written and p -= lr * d, as PyTorch does.
/// </summary>
public static class Sgd
{
    // ---- kernels ----

    [KernelName("sgd_step")]
    internal static void StepKernel(Index1D index, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> momentumBuffer,
        float lr, float momentum, float weightDecay, int firstStep, int n, int stride)
    {
        for (int i = index; i < n; i += stride)
        {
            float b = momentum != 0f && firstStep == 0 ? momentumBuffer[i] : 0f;
            param[i] = Update(ref b, param[i], grad[i], lr, momentum, weightDecay, firstStep);
            if (momentum != 0f) momentumBuffer[i] = b;
        }
    }

    /// <summary>One element's update: returns the new parameter and leaves the new momentum buffer in <paramref name="buf"/>.</summary>
    private static float Update(ref float buf, float p, float g, float lr, float momentum, float weightDecay, int firstStep)
    {
        float d = g + weightDecay * p;
        if (momentum != 0f)
        {
            buf = firstStep != 0 ? d : momentum * buf + d;
            d = buf;
        }
        return p - lr * d;
    }

    /// <summary>Float4 version: the first three arguments are the float4 body of the three views that follow; the last n % 4 go one per thread.</summary>
    [KernelName("sgd_step_v4")]
    internal static void StepKernel4(Index1D index, ArrayView<Float4> param4, ArrayView<Float4> grad4, ArrayView<Float4> buf4,
        ArrayView<float> param, ArrayView<float> grad, ArrayView<float> momentumBuffer,
        float lr, float momentum, float weightDecay, int firstStep, int n, int stride)
    {
        int n4 = n >> 2;
        for (int i = index; i < n4; i += stride)
        {
            Float4 p = param4[i], g = grad4[i];
            Float4 b = momentum != 0f && firstStep == 0 ? buf4[i] : default;
            p = new Float4(
                Update(ref b.X, p.X, g.X, lr, momentum, weightDecay, firstStep),
                Update(ref b.Y, p.Y, g.Y, lr, momentum, weightDecay, firstStep),
                Update(ref b.Z, p.Z, g.Z, lr, momentum, weightDecay, firstStep),
                Update(ref b.W, p.W, g.W, lr, momentum, weightDecay, firstStep));
            if (momentum != 0f) buf4[i] = b;
            param4[i] = p;
        }
        for (int t = (n4 << 2) + index; t < n; t += stride)
        {
            float b = momentum != 0f && firstStep == 0 ? momentumBuffer[t] : 0f;
            param[t] = Update(ref b, param[t], grad[t], lr, momentum, weightDecay, firstStep);
            if (momentum != 0f) momentumBuffer[t] = b;
        }
    }

    // ---- launchers ----

    /// <summary>
    /// One SGD step on <paramref name="param"/> in place, using <paramref name="grad"/> and updating
    /// <paramref name="momentumBuffer"/> (all the same length). <paramref name="firstStep"/> starts the
    /// buffer from the gradient, as PyTorch does when the buffer does not exist yet.
    /// </summary>
    public static void Step(Device dev, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> momentumBuffer,
        float lr, float momentum, float weightDecay, bool firstStep)
    {
        if (Float4Dispatch.CanUse(param.Length, param, grad, momentumBuffer)) StepFloat4(dev, param, grad, momentumBuffer, lr, momentum, weightDecay, firstStep);
        else StepScalar(dev, param, grad, momentumBuffer, lr, momentum, weightDecay, firstStep);
    }

    /// <summary><see cref="Step"/> with 16-byte loads; every view must start on a 16-byte boundary.</summary>
    public static void StepFloat4(Device dev, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> momentumBuffer,
        float lr, float momentum, float weightDecay, bool firstStep)
    {
        using var profile = dev.Profile("sgd_step", OpCost.Sgd(param.Length));
        Validate(dev, param, grad, momentumBuffer, lr, momentum, weightDecay);
        Check.Aligned("Sgd.Step", param, grad, momentumBuffer);
        if (param.Length == 0) return;
        int count = checked((int)param.Length), threads = Float4Dispatch.Threads(dev, count);
        dev.Kernel("sgd_step_v4", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<Float4>, ArrayView<Float4>, ArrayView<Float4>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float, float, int, int, int>(StepKernel4))
            (dev.Stream, threads, Float4Dispatch.Body(param, count), Float4Dispatch.Body(grad, count), Float4Dispatch.Body(momentumBuffer, count),
                param, grad, momentumBuffer, lr, momentum, weightDecay, firstStep ? 1 : 0, count, threads);
    }

    /// <summary><see cref="Step"/> with one float per load, for any alignment.</summary>
    public static void StepScalar(Device dev, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> momentumBuffer,
        float lr, float momentum, float weightDecay, bool firstStep)
    {
        using var profile = dev.Profile("sgd_step", OpCost.Sgd(param.Length));
        Validate(dev, param, grad, momentumBuffer, lr, momentum, weightDecay);
        if (param.Length == 0) return;
        int count = checked((int)param.Length), threads = dev.GridStrideThreads(count);
        dev.Kernel("sgd_step", acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float, float, int, int, int>(StepKernel))
            (dev.Stream, threads, param, grad, momentumBuffer, lr, momentum, weightDecay, firstStep ? 1 : 0, count, threads);
    }

    private static void Validate(Device dev, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> momentumBuffer,
        float lr, float momentum, float weightDecay)
    {
        ArgumentNullException.ThrowIfNull(dev);
        Check.SameLength("Sgd.Step", param, grad, momentumBuffer);
        if (!float.IsFinite(lr) || !float.IsFinite(momentum) || !float.IsFinite(weightDecay) || lr < 0 || momentum < 0 || weightDecay < 0)
        {
            throw new ArgumentException($"Sgd.Step: lr, momentum and weightDecay must be finite and non-negative (got lr={lr}, momentum={momentum}, weightDecay={weightDecay}).");
        }
        if (param.Length > int.MaxValue)
        {
            throw new ArgumentException($"Sgd.Step: {param.Length} parameters exceed the kernel's 32-bit indexing.");
        }
    }

    // ---- float64 references ----

    public static class Reference
    {
        /// <summary>One step in place on <paramref name="param"/> and <paramref name="momentumBuffer"/>.</summary>
        public static void Step(double[] param, double[] grad, double[] momentumBuffer, double lr, double momentum, double weightDecay, bool firstStep)
        {
            for (int i = 0; i < param.Length; i++)
            {
                double d = grad[i] + weightDecay * param[i];
                if (momentum != 0)
                {
                    momentumBuffer[i] = firstStep ? d : momentum * momentumBuffer[i] + d;
                    d = momentumBuffer[i];
                }
                param[i] -= lr * d;
            }
        }
    }
}
