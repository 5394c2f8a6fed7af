using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels.Cases;

/// <summary>The launcher signature of the op: any variant of it (the engine's own launcher converts as a method group).</summary>
public delegate void LossForwardLauncher(Device dev, ArrayView<float> logits, ArrayView<int> labels, ArrayView<float> probs,
    ArrayView<float> loss, ArrayView<int> correct, int n, int classes);

/// <summary>Fused softmax + cross-entropy (mean) forward: probabilities, loss and correct count (exact).</summary>
public sealed class LossForwardCase : OpCase<LossForwardLauncher>, ICheckedCase
{
    public const string OpName = "softmax_xent_fwd";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in CaseCheck.Sizes(LossCase.Shapes, LossCase.LargeShapes, large)
        select CaseCheck.Of(OpName, $"n={s.N} classes={s.Classes}", (d, r) => new LossForwardCase(d, r, s.N, s.Classes), Default);

    public static LossForwardLauncher Default => SoftmaxCrossEntropy.Forward;

    private readonly int _n, _classes;
    private readonly float[] _logits0;
    private readonly int[] _labels0;
    private readonly ArrayView<float>[] _logits, _probs, _loss;
    private readonly ArrayView<int>[] _labels, _correct;
    private (double[] Probs, double Loss, int Correct) _expected;

    public LossForwardCase(Device dev, Random rng, int n, int classes, int sets = 1)
        : base(dev, rng, OpName, $"n={n} classes={classes}", OpCost.SoftmaxCrossEntropy(n, classes), gemm: false, sets)
    {
        _n = n;
        _classes = classes;
        (_logits0, _labels0) = LossCase.Inputs(rng, n, classes);
        // The timing sets' labels need not match their logits' clear maxima: only set 0 is checked.
        _logits = PerSet(_logits0, () => LossCase.Inputs(rng, n, classes).Logits);
        _labels = PerSet(_labels0, () => CaseInputs.Labels(rng, n, classes));
        _probs = Outputs<float>((long)n * classes);
        _loss = Outputs<float>(1);
        _correct = Outputs<int>(1);
    }

    public override void Launch(LossForwardLauncher launcher, int set)
        => launcher(Dev, _logits[set], _labels[set], _probs[set], _loss[set], _correct[set], _n, _classes);

    protected override void Reset()
    {
        Poison(_probs[0], _loss[0]);
        _correct[0].CopyFromCPU(Dev.Stream, new[] { -1 });
    }

    protected override void ComputeReference() => _expected = SoftmaxCrossEntropy.Reference.Forward(D(_logits0), _labels0, _n, _classes);

    protected override IEnumerable<OutputError> Compare()
    {
        int correct = Dev.Download(_correct[0])[0];
        return
        [
            Error("loss", [_expected.Loss], _loss[0]), Error("probs", _expected.Probs, _probs[0]),
            Error("correct", [_expected.Correct], [correct], rtol: 0, atol: 0),
        ];
    }
}
