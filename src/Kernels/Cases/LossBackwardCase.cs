using ILGPU;

namespace Engine.Kernels.Cases;

/// <summary>The launcher signature of the op: any variant of it (the engine's own launcher converts as a method group).</summary>
public delegate void LossBackwardLauncher(Device dev, ArrayView<float> probs, ArrayView<int> labels, ArrayView<float> dlogits, int n, int classes, float scale);

/// <summary>dlogits = (probs - onehot) · scale from the probabilities of a forward over random logits; scale 1/n is the mean's.</summary>
public sealed class LossBackwardCase : OpCase<LossBackwardLauncher>, ICheckedCase
{
    public const string OpName = "softmax_xent_bwd";

    public static IEnumerable<CaseCheck> Checks(bool large) =>
        from s in CaseCheck.Sizes(LossCase.Shapes, LossCase.LargeShapes, large)
        select CaseCheck.Of(OpName, $"n={s.N} classes={s.Classes}", (d, r) => new LossBackwardCase(d, r, s.N, s.Classes), Default);

    public static LossBackwardLauncher Default => SoftmaxCrossEntropy.Backward;

    private readonly int _n, _classes;
    private readonly double _scale;
    private readonly double[] _probs0;
    private readonly int[] _labels0;
    private readonly ArrayView<float>[] _probs, _dlogits;
    private readonly ArrayView<int>[] _labels;
    private double[] _expected = [];

    /// <param name="scaleOfMean">The gradient's scale as a multiple of the mean's 1/n (a data-parallel replica of a larger global batch: 1/replicas).</param>
    public LossBackwardCase(Device dev, Random rng, int n, int classes, int sets = 1, double scaleOfMean = 1)
        : base(dev, rng, OpName, $"n={n} classes={classes}" + (scaleOfMean == 1 ? "" : $" scale={scaleOfMean}/n"),
            OpCost.SoftmaxCrossEntropy(n, classes), gemm: false, sets)
    {
        _n = n;
        _classes = classes;
        _scale = scaleOfMean / n;
        _labels0 = CaseInputs.Labels(rng, n, classes);
        float[] probs = Probabilities(n, classes);
        _probs0 = D(probs);
        _probs = PerSet(probs, () => Probabilities(n, classes));
        _labels = PerSet(_labels0, () => CaseInputs.Labels(rng, n, classes));
        _dlogits = Outputs<float>((long)n * classes);
    }

    private float[] Probabilities(int n, int classes)
        => Array.ConvertAll(SoftmaxCrossEntropy.Reference.Forward(D(Rand((long)n * classes, -5, 5)), new int[n], n, classes).Probs, v => (float)v);

    public override void Launch(LossBackwardLauncher launcher, int set) => launcher(Dev, _probs[set], _labels[set], _dlogits[set], _n, _classes, (float)_scale);
    protected override void Reset() => Poison(_dlogits[0]);
    protected override void ComputeReference() => _expected = SoftmaxCrossEntropy.Reference.Backward(_probs0, _labels0, _n, _classes, _scale);
    protected override IEnumerable<OutputError> Compare() => [Error("dlogits", _expected, _dlogits[0])];
}
