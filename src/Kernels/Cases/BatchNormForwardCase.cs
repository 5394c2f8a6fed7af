namespace Engine.Kernels.Cases;

/// <summary>
/// Training forward: batch statistics, running-statistics update, normalise; with <c>relu</c>, the
/// bn -> relu pair (y = max(0, bn(x))), whose variants are the fused op and bn then relu.
/// </summary>
public sealed class BatchNormForwardCase(Device dev, Random rng, BatchNormShape s, int sets = 1, bool relu = false)
    : BatchNormTrainCase<BatchNormForwardLauncher>(dev, rng, relu ? "batchnorm_relu_fwd_train" : "batchnorm_fwd_train", s,
        relu ? OpCost.BatchNormReluTrain(s.Length) : OpCost.BatchNormTrain(s.Length), sets)
{
    public static BatchNormForwardLauncher Default(bool relu) => relu ? BatchNorm2d.ForwardTrainRelu : BatchNorm2d.ForwardTrain;

    public override void Launch(BatchNormForwardLauncher launcher, int set)
        => launcher(Dev, X[set], Gamma, Beta, Y[set], SaveMean[set], SaveInvStd[set], RunningMean[set], RunningVar[set], S.N, S.C, S.HW,
            BatchNormCase.Momentum, BatchNormCase.Eps);

    protected override BatchNorm2d.Reference.TrainResult Reference(double[] runningMean, double[] runningVar) => relu
        ? BatchNorm2d.Reference.ForwardTrainRelu(D(X0), D(Gamma0), D(Beta0), runningMean, runningVar, S.N, S.C, S.HW)
        : BatchNorm2d.Reference.ForwardTrain(D(X0), D(Gamma0), D(Beta0), runningMean, runningVar, S.N, S.C, S.HW);

    protected override double[] Epilogue(double[] z) => relu ? Relu.Reference.Forward(z) : z;
}
