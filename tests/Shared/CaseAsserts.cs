using Engine.Kernels.Cases;

namespace Engine.Tests;

/// <summary>Runs an op's case (src/Kernels/Cases: its inputs, reference and tolerance) as a test.</summary>
public static class CaseAsserts
{
    /// <summary>
    /// Builds <paramref name="make"/>'s case from a fresh seed, launches <paramref name="launcher"/> once on
    /// poisoned outputs, and fails naming every output that is off, the element, and the seed.
    /// </summary>
    public static void Passes<TL>(Func<Random, OpCase<TL>> make, TL launcher, string label = "", Precision precision = Precision.Fp32) where TL : Delegate
    {
        var rng = Numerics.NewRandom(out int seed);
        using OpCase<TL> k = make(rng);
        CheckResult r = k.CheckOutputs(launcher, precision);
        Assert.True(r.Passed, $"{r}{(label.Length > 0 ? $" ({label})" : "")} (seed {seed})");
    }

    /// <summary>The opposite: the case catches <paramref name="launcher"/>, a kernel that is wrong on purpose.</summary>
    public static CheckResult Fails<TL>(Func<Random, OpCase<TL>> make, TL launcher, string why) where TL : Delegate
    {
        var rng = Numerics.NewRandom(out int seed);
        using OpCase<TL> k = make(rng);
        CheckResult r = k.CheckOutputs(launcher);
        Assert.False(r.Passed, $"{why}: the case passed it: {r} (seed {seed})");
        return r;
    }
}
