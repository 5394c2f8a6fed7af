using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>Training forward of a BasicBlock's tail, y = relu(bn(x) + identity).</summary>
public delegate void BatchNormAddReluForwardLauncher(Device dev, ArrayView<float> x, ArrayView<float> identity, ArrayView<float> gamma, ArrayView<float> beta,
    ArrayView<float> y, ArrayView<float> saveMean, ArrayView<float> saveInvStd, ArrayView<float> runningMean, ArrayView<float> runningVar,
    int n, int c, int hw, float momentum, float eps);

/// <summary>
/// Training forward of a BasicBlock's tail, y = relu(bn(x) + identity): batch statistics, running-statistics
/// update and the fused output. identity lies in [-1, 1], so the ReLU clips a good part of y; identity is an
/// input only, and must be left exactly as it was.
/// </summary>
public sealed class BatchNormAddReluForwardCase : BatchNormTrainCase<BatchNormAddReluForwardLauncher>, ICheckedCase
{
    public const string OpName = "batchnorm_add_relu_fwd_train";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in CaseCheck.Sizes(BatchNormCase.Shapes, BatchNormCase.LargeShapes, large)
        select CaseCheck.Of(OpName, s, (d, r) => new BatchNormAddReluForwardCase(d, r, s), Default);

    public static BatchNormAddReluForwardLauncher Default => BatchNorm2d.ForwardTrainAddRelu;

    private readonly float[] _id0;
    private readonly ArrayView<float>[] _id;

    public BatchNormAddReluForwardCase(Device dev, Random rng, BatchNormShape s, int sets = 1)
        : base(dev, rng, OpName, s, OpCost.BatchNormAddReluTrain(s.Length), sets)
    {
        _id0 = Rand(s.Length);
        _id = PerSet(_id0, () => Rand(s.Length));
    }

    public override void Launch(BatchNormAddReluForwardLauncher launcher, int set)
        => launcher(Dev, X[set], _id[set], Gamma, Beta, Y[set], SaveMean[set], SaveInvStd[set], RunningMean[set], RunningVar[set], S.N, S.C, S.HW,
            BatchNormCase.Momentum, BatchNormCase.Eps);

    protected override BatchNorm2d.Reference.TrainResult Reference(double[] runningMean, double[] runningVar)
        => BatchNorm2d.Reference.ForwardTrainAddRelu(D(X0), D(_id0), D(Gamma0), D(Beta0), runningMean, runningVar, S.N, S.C, S.HW);

    protected override double[] Epilogue(double[] z) => Relu.Reference.Forward(Elementwise.Reference.Add(z, D(_id0)));

    protected override IEnumerable<OutputError> Compare() => base.Compare().Append(Error("identity (unchanged)", D(_id0), _id[0], rtol: 0, atol: 0));
}
