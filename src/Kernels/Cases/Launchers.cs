using ILGPU;

namespace Engine.Kernels.Cases;

// Launcher signatures, one per op family: a variant of an op is any method with the op's signature.
// The engine's own launchers convert to them as method groups (Conv2d.Forward is a ConvLauncher).

/// <summary>Conv forward (x, w -> y), backward-data (dy, w -> dx) and backward-weight (x, dy -> dw).</summary>
public delegate void ConvLauncher(Device dev, ArrayView<float> a, ArrayView<float> b, ArrayView<float> output, in Conv2dShape s);

public delegate void BatchNormForwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
    ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> runningMean, ArrayView<float> runningVar,
    int n, int c, int hw, float momentum, float eps);

public delegate void BatchNormBackwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> gamma,
    ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dx, ArrayView<float> dgamma, ArrayView<float> dbeta, int n, int c, int hw);

/// <summary>Backward of a bn -> relu pair given the pair's output y (the ReLU mask) and dy, the gradient of y.</summary>
public delegate void BatchNormReluBackwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> gamma,
    ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dx, ArrayView<float> dgamma, ArrayView<float> dbeta, int n, int c, int hw);

/// <summary>Training forward of a BasicBlock's tail, y = relu(bn(x) + identity).</summary>
public delegate void BatchNormAddReluForwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> identity, ArrayView<float> gamma, ArrayView<float> beta,
    ArrayView<float> y, ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> runningMean, ArrayView<float> runningVar,
    int n, int c, int hw, float momentum, float eps);

/// <summary>Backward of y = relu(bn(x) + identity) given y (the ReLU mask) and dy: dx, d(identity), dgamma, dbeta.</summary>
public delegate void BatchNormAddReluBackwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> gamma,
    ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> dx, ArrayView<float> dIdentity, ArrayView<float> dgamma, ArrayView<float> dbeta,
    int n, int c, int hw);

/// <summary>ReLU forward (x -> y).</summary>
public delegate void UnaryLauncher(Device dev, ArrayView<float> x, ArrayView<float> y);

/// <summary>ReLU backward (y, dy -> dx) and the residual add (a, b -> y).</summary>
public delegate void BinaryLauncher(Device dev, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y);

public delegate void MaxPoolForwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> y, ArrayView<int> argmax, in Pool2dShape s);

public delegate void MaxPoolBackwardLauncher(Device dev, ArrayView<float> dy, ArrayView<int> argmax, ArrayView<float> dx, in Pool2dShape s);

/// <summary>Adaptive average pool to 1x1, forward (x [nc, hw] -> y [nc]) and backward (dy [nc] -> dx [nc, hw]).</summary>
public delegate void AvgPoolLauncher(Device dev, ArrayView<float> input, ArrayView<float> output, int nc, int hw);

public delegate void LinearForwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ArrayView<float> y, int n, int inF, int outF);

public delegate void LinearBackwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> dy,
    ArrayView<float> dx, ArrayView<float> dw, ArrayView<float> db, int n, int inF, int outF);

public delegate void LossForwardLauncher(Device dev, ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> probs,
    ArrayView<float> loss, ArrayView<int> correct, int n, int classes);

public delegate void LossBackwardLauncher(Device dev, ArrayView<float> probs, ArrayView<int> labels, ArrayView<float> dlogits, int n, int classes, float scale);

public delegate void SgdLauncher(Device dev, ArrayView<float> param, ArrayView<float> grad, ArrayView<float> momentumBuffer,
    float lr, float momentum, float weightDecay, bool firstStep);

public delegate void AugmentLauncher(Device dev, ArrayView<byte> images, ArrayView<int> crops, ArrayView<int> flips, ArrayView<float> output,
    ArrayView<float> mean, ArrayView<float> std, int n, int c, int h, int w, int pad);

/// <summary>The arithmetic a variant promises, which sets the tolerance of its check.</summary>
public enum Precision
{
    /// <summary>fp32 products and sums: the op's usual tolerance.</summary>
    Fp32,

    /// <summary>Inputs rounded to TF32 (10-bit mantissa) on the tensor cores, fp32 sums: see <see cref="Conv2dTf32.Tolerance(long)"/>.</summary>
    Tf32,
}
