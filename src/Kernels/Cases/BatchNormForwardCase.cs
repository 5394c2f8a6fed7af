using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>The launcher signature of the op: any variant of it (the engine's own launcher converts as a method group).</summary>
public delegate void BatchNormForwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y,
    ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> runningMean, ArrayView<float> runningVar,
    int n, int c, int hw, float momentum, float eps);

/// <summary>
/// Training forward: batch statistics, running-statistics update, normalise; with <c>relu</c>, the
/// bn -> relu pair (y = max(0, bn(x))), whose variants are the fused op and bn then relu.
/// </summary>
public sealed class BatchNormForwardCase(Device dev, Random rng, BatchNormShape s, int sets = 1, bool relu = false)
    : BatchNormTrainCase<BatchNormForwardLauncher>(dev, rng, OpName(relu), s, relu ? OpCost.BatchNormReluTrain(s.Length) : OpCost.BatchNormTrain(s.Length), sets),
    ICheckedCase
{
    public static string OpName(bool relu) => relu ? "batchnorm_relu_fwd_train" : "batchnorm_fwd_train";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in CaseCheck.Sizes(BatchNormCase.Shapes, BatchNormCase.LargeShapes, large)
        from relu in new[] { false, true }
        select CaseCheck.Of(OpName(relu), s, (d, r) => new BatchNormForwardCase(d, r, s, relu: relu), Default(relu));

    public static BatchNormForwardLauncher Default(bool relu) => relu ? BatchNorm2d.ForwardTrainRelu : BatchNorm2d.ForwardTrain;

    public override void Launch(BatchNormForwardLauncher launcher, int set)
        => launcher(Dev, X[set], Gamma, Beta, Y[set], SaveMean[set], SaveInvStd[set], RunningMean[set], RunningVar[set], S.N, S.C, S.HW,
            BatchNormCase.Momentum, BatchNormCase.Eps);

    protected override BatchNorm2d.Reference.TrainResult Reference(double[] runningMean, double[] runningVar) => relu
        ? BatchNorm2d.Reference.ForwardTrainRelu(D(X0), D(Gamma0), D(Beta0), runningMean, runningVar, S.N, S.C, S.HW)
        : BatchNorm2d.Reference.ForwardTrain(D(X0), D(Gamma0), D(Beta0), runningMean, runningVar, S.N, S.C, S.HW);

    protected override double[] Epilogue(double[] z) => relu ? Relu.Reference.Forward(z) : z;
}
