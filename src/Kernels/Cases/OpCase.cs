using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels.Cases;

/// <summary>
/// One op at one shape on a device: <see cref="Sets"/> sets of random operands (timed runs rotate
/// through them, so a run does not find its inputs in cache from the run before), and the float64
/// reference outputs of set 0, computed on a worker thread while the device is busy. Any variant of
/// the op (<typeparamref name="TLauncher"/>) can be launched on any set, or checked on set 0:
/// in-place operands restored, outputs poisoned with NaN, one launch, compared with the reference.
/// </summary>
/// <remarks>
/// Each op's case (its random inputs, shapes, reference and tolerance) is written once, here in the
/// kernel library, and used three ways: by the xunit theories (tests/Kernels.Tests, on the CPU
/// accelerator and the simulated GPU), by <c>engine check kernels</c> (the same checks on a GPU host,
/// where no test project is deployed) and by <c>engine bench kernels</c> (each variant validated before
/// it is timed). It lives beside the kernels because both the test project and the runner reference
/// this library and nothing else they share; the cases use only the kernels' own types.
/// </remarks>
public abstract class OpCase<TLauncher> : IDisposable where TLauncher : Delegate
{
    private readonly List<IDisposable> _buffers = new();
    private Task? _reference;

    protected OpCase(Device dev, Random rng, string op, string shape, Cost cost, bool gemm, int sets)
    {
        if (sets < 1) throw new ArgumentException($"{op}: at least one operand set is needed, got {sets}.");
        Dev = dev;
        Rng = rng;
        Op = op;
        Shape = shape;
        Cost = cost;
        Gemm = gemm;
        Sets = sets;
    }

    protected Device Dev { get; }
    protected Random Rng { get; }

    /// <summary>The op's name as the kernel profiler shows it (conv2d_fwd).</summary>
    public string Op { get; }
    public string Shape { get; }
    public Cost Cost { get; }

    /// <summary>GEMM-shaped (judged by FLOP/s against the FMA ceiling) rather than memory-bound (GB/s against the copy ceiling).</summary>
    public bool Gemm { get; }
    public int Sets { get; }

    /// <summary>Launches <paramref name="launcher"/> on operand set <paramref name="set"/> (asynchronously on the device's stream).</summary>
    public abstract void Launch(TLauncher launcher, int set);

    /// <summary>Restores set 0's in-place operands to their host values and fills its outputs with NaN.</summary>
    protected abstract void Reset();

    /// <summary>Fills the expected outputs of set 0 from its host operands (runs on a worker thread).</summary>
    protected abstract void ComputeReference();

    /// <summary>Each output of set 0 against its expected values: the worst error of each (at most 1 passes).</summary>
    protected abstract IEnumerable<OutputError> Compare();

    /// <summary>Starts the float64 reference on a worker thread (idempotent).</summary>
    public void StartReference() => _reference ??= Task.Run(ComputeReference);

    /// <summary>The precision of the variant being checked: <see cref="Compare"/> picks its tolerance by it.</summary>
    protected Precision CheckPrecision { get; private set; }

    /// <summary>
    /// One launch of <paramref name="launcher"/> on fresh outputs (poisoned with NaN), compared with the
    /// reference: every output's worst error, at most 1 passes (<see cref="CheckResult.Passed"/>).
    /// </summary>
    public CheckResult CheckOutputs(TLauncher launcher, Precision precision = Precision.Fp32)
    {
        CheckPrecision = precision;
        StartReference();
        Reset();
        Dev.Synchronize();
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        Launch(launcher, 0);
        Dev.Synchronize();
        double ms = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        _reference!.GetAwaiter().GetResult();
        return new CheckResult(Op, Shape, Compare().ToArray(), ms);
    }

    /// <summary>The worst error of <see cref="CheckOutputs"/> over all outputs (at most 1 passes).</summary>
    public double Check(TLauncher launcher, Precision precision = Precision.Fp32) => CheckOutputs(launcher, precision).Worst;

    /// <summary>
    /// max |actual - expected| / (atol + rtol |expected|), infinite for a non-finite output: llm.c's
    /// check written as a ratio, so that at most 1 passes and the margin is visible. The element where it
    /// is worst (the first non-finite one, if any) is kept for the message.
    /// </summary>
    /// <param name="slack">Per element, added to atol: a rounding bound for ill-conditioned outputs.</param>
    public static OutputError Error(string output, double[] expected, float[] actual, double rtol = 1e-4, double atol = 1e-5, double[]? slack = null)
    {
        if (expected.Length != actual.Length)
        {
            return new OutputError(output, double.PositiveInfinity, -1, expected.Length, actual.Length, rtol, atol);
        }
        var worst = new OutputError(output, 0, -1, 0, 0, rtol, atol);
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = Math.Abs(actual[i] - expected[i]);
            // An exact comparison (rtol = atol = 0) passes on equality alone.
            double error = !float.IsFinite(actual[i]) ? double.PositiveInfinity
                : diff == 0 ? 0 : diff / (atol + (slack?[i] ?? 0) + rtol * Math.Abs(expected[i]));
            if (error > worst.Error || worst.Index < 0) worst = new OutputError(output, error, i, expected[i], actual[i], rtol, atol);
            if (double.IsPositiveInfinity(error)) break;
        }
        return worst;
    }

    protected OutputError Error(string output, double[] expected, ArrayView<float> actual, double rtol = 1e-4, double atol = 1e-5)
        => Error(output, expected, Dev.Download(actual), rtol, atol);

    /// <summary>
    /// The absolute tolerance of outputs that are float32 sums of <paramref name="terms"/> products of O(1)
    /// values: where a sum cancels to near zero only an absolute bound holds, and the rounding it must
    /// absorb grows with the term count (about eps/2 per add, over partial sums of size up to sqrt(terms)).
    /// </summary>
    public static double SumAtol(long terms) => Math.Max(1e-5, 1e-7 * terms);

    protected float[] Rand(long n, float lo = -1, float hi = 1) => CaseInputs.Uniform(Rng, n, lo, hi);

    protected static double[] D(float[] a) => CaseInputs.D(a);

    /// <summary>A device copy of <paramref name="data"/>, freed with the case.</summary>
    protected ArrayView<T> Upload<T>(T[] data) where T : unmanaged
    {
        var b = Dev.Upload<T>(data);
        _buffers.Add(b);
        return b.View;
    }

    /// <summary>A device buffer of <paramref name="n"/> elements, freed with the case.</summary>
    protected ArrayView<T> Allocate<T>(long n) where T : unmanaged
    {
        var b = Dev.Allocate<T>(Math.Max(1, n));
        _buffers.Add(b);
        return b.View.SubView(0, n);
    }

    /// <summary>One view per set: set 0 holds <paramref name="first"/>, the others fresh values from <paramref name="make"/>.</summary>
    protected ArrayView<T>[] PerSet<T>(T[] first, Func<T[]> make) where T : unmanaged
    {
        var views = new ArrayView<T>[Sets];
        views[0] = Upload(first);
        for (int s = 1; s < Sets; s++) views[s] = Upload(make());
        return views;
    }

    /// <summary>One output buffer of <paramref name="n"/> elements per set.</summary>
    protected ArrayView<T>[] Outputs<T>(long n) where T : unmanaged
        => Enumerable.Range(0, Sets).Select(_ => Allocate<T>(n)).ToArray();

    protected void Poison(params ArrayView<float>[] views)
    {
        foreach (var v in views)
        {
            if (v.Length > 0) Elementwise.Fill(Dev, v, float.NaN);
        }
    }

    protected void Restore(ArrayView<float> view, float[] values)
    {
        if (values.Length > 0) view.CopyFromCPU(Dev.Stream, values);
    }

    public void Dispose()
    {
        Dev.Synchronize();
        try
        {
            _reference?.GetAwaiter().GetResult();
        }
        catch (Exception)
        {
            // A failed reference already surfaced through Check; disposing must still free the buffers.
        }
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
        GC.SuppressFinalize(this);
    }
}
