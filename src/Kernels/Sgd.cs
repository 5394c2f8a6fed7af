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
            float p = param[i];
            float d = grad[i] + weightDecay * p;
            if (momentum != 0f)
            {
                float buf = firstStep != 0 ? d : momentum * momentumBuffer[i] + d;
                momentumBuffer[i] = buf;
                d = buf;
            }
            param[i] = p - lr * d;
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
        using var profile = dev.Profile("sgd_step", OpCost.Sgd(param.Length));
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
        if (param.Length == 0) return;
        int count = checked((int)param.Length), threads = dev.GridStrideThreads(count);
        dev.Kernel("sgd_step", acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float, float, int, int, int>(StepKernel))
            (dev.Stream, threads, param, grad, momentumBuffer, lr, momentum, weightDecay, firstStep ? 1 : 0, count, threads);
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
