using System.Globalization;

namespace Engine.Kernels.Cases;

/// <summary>
/// One output of a checked op: its worst error max |actual - expected| / (atol + rtol |expected|) (at
/// most 1 passes; infinite for a NaN or infinite output), and the element where it is reached.
/// </summary>
/// <param name="Index">The worst element, or -1 when the lengths differ (then Expected and Actual are the two lengths).</param>
public readonly record struct OutputError(string Output, double Error, long Index, double Expected, double Actual, double Rtol, double Atol)
{
    public bool Passed => Error <= 1 && double.IsFinite(Error);

    public override string ToString() => Index < 0
        ? string.Format(CultureInfo.InvariantCulture, "{0}: {1} elements expected, {2} written", Output, Expected, Actual)
        : string.Format(CultureInfo.InvariantCulture, "{0}: error {1:G3} at [{2}] (expected {3:R}, got {4:R}; rtol {5:G2}, atol {6:G2})",
            Output, Error, Index, Expected, Actual, Rtol, Atol);
}

/// <summary>Every output of one launch of an op at one shape against its float64 reference.</summary>
/// <param name="LaunchMs">Wall time of the checked launch, synchronised (a first launch includes the kernel's compilation).</param>
public sealed record CheckResult(string Op, string Shape, IReadOnlyList<OutputError> Outputs, double LaunchMs)
{
    /// <summary>The worst error over the outputs (at most 1 passes).</summary>
    public double Worst => Outputs.Count == 0 ? double.PositiveInfinity : Outputs.Max(o => o.Error);

    public bool Passed => Outputs.Count > 0 && Outputs.All(o => o.Passed);

    /// <summary>The failing outputs with where they fail, or every output when all pass.</summary>
    public override string ToString()
        => $"{Op} {Shape}: " + string.Join("; ", (Passed ? Outputs : Outputs.Where(o => !o.Passed)).Select(o => o.ToString()));
}

/// <summary>The arithmetic a variant promises, which sets the tolerance of its check.</summary>
public enum Precision
{
    /// <summary>fp32 products and sums: the op's usual tolerance.</summary>
    Fp32,

    /// <summary>Inputs rounded to TF32 (10-bit mantissa) on the tensor cores, fp32 sums: see <see cref="Conv2dTf32.Tolerance(long)"/>.</summary>
    Tf32,
}
