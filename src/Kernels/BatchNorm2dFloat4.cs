using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// The element-wise passes of batch norm's training forward (normalise) and backward (dx) with float4
/// loads, one kernel each for the plain op and its ReLU and add + ReLU fusions (an epilogue mode, uniform
/// across the launch). A float4 lies inside one channel when hw % 4 == 0, which holds at every ResNet
/// stage but the 1x1 one; the launchers fall back to the scalar passes there, for unaligned views, and
/// under <see cref="Float4Dispatch.Suspend"/>. Each element sees exactly the scalar kernels' float operations.
/// </summary>
public static partial class BatchNorm2d
{
    /// <summary>Which epilogue a float4 pass applies: none, ReLU, or + identity then ReLU.</summary>
    private const int Plain = 0, WithRelu = 1, WithAddRelu = 2;

    private static float Clamp(float v) => v < 0f ? 0f : v;

    private static float Normalized(float x, float mean, float scale, float beta, float identity, int mode)
    {
        float v = (x - mean) * scale + beta;
        if (mode == WithAddRelu) v += identity;
        return mode == Plain ? v : Clamp(v);
    }

    /// <summary>y = epilogue((x - mean) * (invStd * gamma) + beta); <paramref name="id4"/> is read only in add + ReLU mode.</summary>
    [KernelName("batchnorm2d_normalize_v4")]
    internal static void NormalizeKernel4(Index1D index, ArrayView<Float4> x4, ArrayView<Float4> id4, ArrayView<Float4> y4, ArrayView<float> mean,
        ArrayView<float> invStd, ArrayView<float> gamma, ArrayView<float> beta, ChannelIndex channelOf, int mode, int n4, int stride)
    {
        for (int i = index; i < n4; i += stride)
        {
            int c = channelOf.Of(i);
            float mu = mean[c], scale = invStd[c] * gamma[c], b = beta[c];
            Float4 v = x4[i];
            Float4 id = mode == WithAddRelu ? id4[i] : default;
            y4[i] = new Float4(
                Normalized(v.X, mu, scale, b, id.X, mode), Normalized(v.Y, mu, scale, b, id.Y, mode),
                Normalized(v.Z, mu, scale, b, id.Z, mode), Normalized(v.W, mu, scale, b, id.W, mode));
        }
    }

    /// <summary>The scalar dx kernels' expression, association included, so both give the same bits.</summary>
    private static float Dx(float x, float g, float mean, float invStd, float gammaInvStd, float dbetaM, float dgamma, float invM)
        => gammaInvStd * (g - dbetaM - (x - mean) * invStd * dgamma * invM);

    /// <summary>
    /// dx = gamma*invStd * (g - dbeta/m - xhat*dgamma/m) with g = dy, or (y &gt; 0 ? dy : 0) in the ReLU modes;
    /// add + ReLU mode also writes dIdentity = g (after dy is read, so it may be dy itself).
    /// </summary>
    [KernelName("batchnorm2d_bwd_dx_v4")]
    internal static void BackwardDxKernel4(Index1D index, ArrayView<Float4> x4, ArrayView<Float4> y4, ArrayView<Float4> dy4, ArrayView<Float4> dx4,
        ArrayView<Float4> di4, ArrayView<float> gamma, ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dgamma,
        ArrayView<float> dbeta, ChannelIndex channelOf, float invM, int mode, int stride)
    {
        int n4 = dx4.IntLength; // the launcher passes exactly the float4 body
        for (int i = index; i < n4; i += stride)
        {
            int c = channelOf.Of(i);
            float invStd = saveInvStd[c], mu = saveMean[c];
            float gammaInvStd = gamma[c] * invStd, dbetaM = dbeta[c] * invM, dg = dgamma[c];
            Float4 x = x4[i], g = dy4[i];
            if (mode != Plain)
            {
                Float4 y = y4[i];
                g = new Float4(y.X > 0f ? g.X : 0f, y.Y > 0f ? g.Y : 0f, y.Z > 0f ? g.Z : 0f, y.W > 0f ? g.W : 0f);
            }
            dx4[i] = new Float4(
                Dx(x.X, g.X, mu, invStd, gammaInvStd, dbetaM, dg, invM), Dx(x.Y, g.Y, mu, invStd, gammaInvStd, dbetaM, dg, invM),
                Dx(x.Z, g.Z, mu, invStd, gammaInvStd, dbetaM, dg, invM), Dx(x.W, g.W, mu, invStd, gammaInvStd, dbetaM, dg, invM));
            if (mode == WithAddRelu) di4[i] = g;
        }
    }

    /// <summary>Runs the float4 normalise pass and returns true, or returns false when the scalar pass must run.</summary>
    private static bool TryNormalizeFloat4(Device dev, ArrayView<float> x, ArrayView<float> identity, ArrayView<float> y, ArrayView<float> mean,
        ArrayView<float> invStd, ArrayView<float> gamma, ArrayView<float> beta, int c, int hw, int count, int mode)
    {
        if (hw % 4 != 0 || !Float4Dispatch.CanUse(count, x, y, mode == WithAddRelu ? identity : x)) return false;
        int n4 = count / 4, threads = dev.GridStrideThreads(n4);
        var x4 = Float4Dispatch.Body(x, count);
        dev.Kernel("batchnorm2d_normalize_v4", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<Float4>, ArrayView<Float4>, ArrayView<Float4>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ChannelIndex, int, int, int>(NormalizeKernel4))
            (dev.Stream, threads, x4, mode == WithAddRelu ? Float4Dispatch.Body(identity, count) : x4, Float4Dispatch.Body(y, count), mean, invStd, gamma, beta,
                new ChannelIndex(c, hw / 4), mode, n4, threads);
        return true;
    }

    /// <summary>Runs the float4 dx pass and returns true, or returns false when the scalar pass must run.</summary>
    private static bool TryBackwardDxFloat4(Device dev, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx,
        ArrayView<float> dIdentity, ArrayView<float> gamma, ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dgamma,
        ArrayView<float> dbeta, int c, int hw, int m, int count, int mode)
    {
        if (hw % 4 != 0 || !Float4Dispatch.CanUse(count, x, dy, dx, mode == Plain ? x : y) || (mode == WithAddRelu && !Float4Dispatch.IsAligned(dIdentity))) return false;
        int n4 = count / 4, threads = dev.GridStrideThreads(n4);
        var x4 = Float4Dispatch.Body(x, count);
        var dx4 = Float4Dispatch.Body(dx, count);
        dev.Kernel("batchnorm2d_bwd_dx_v4", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<Float4>, ArrayView<Float4>, ArrayView<Float4>, ArrayView<Float4>, ArrayView<Float4>,
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ChannelIndex,
                float, int, int>(BackwardDxKernel4))
            (dev.Stream, threads, x4, mode == Plain ? x4 : Float4Dispatch.Body(y, count), Float4Dispatch.Body(dy, count), dx4,
                mode == WithAddRelu ? Float4Dispatch.Body(dIdentity, count) : dx4, gamma.SubView(0, c), saveMean, saveInvStd, dgamma, dbeta, new ChannelIndex(c, hw / 4), 1f / m, mode, threads);
        return true;
    }
}
