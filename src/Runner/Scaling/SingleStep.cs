using System.Globalization;
using Engine.Runner.Training;

namespace Engine.Runner.Scaling;

/// <summary>
/// One single-device step split into the engine's phases (seconds): measured by a run's
/// <see cref="Breakdown"/>, or split from a given epoch time by stated assumptions.
/// </summary>
/// <param name="H2dBytes">Bytes the batch's upload moves per step.</param>
public sealed record SingleStep(IReadOnlyDictionary<string, double> Phases, long H2dBytes, IReadOnlyList<string> Assumptions)
{
    public double Seconds => Phases.Values.Sum();
    public double this[string phase] => Phases.TryGetValue(phase, out double s) ? s : 0;

    /// <summary>SGD with momentum and weight decay, fused: reads parameter, gradient and momentum, writes parameter and momentum.</summary>
    public const int OptimizerPasses = 5;

    public static SingleStep FromBreakdown(Breakdown b)
    {
        if (b.Mode != "single") throw new ArgumentException($"Expected a single-device breakdown, got mode '{b.Mode}'.");
        var phases = PhaseClock.Phases.ToDictionary(p => p, p => b.Phases.TryGetValue(p, out PhaseStat? s) ? s.SecondsPerStep : 0);
        long h2dBytes = b.Phases.TryGetValue("h2d", out PhaseStat? h) ? h.BytesPerStep : 0;
        return new SingleStep(phases, h2dBytes, new[] { $"Single step: measured, {b.Steps} steps, phases as the engine's phase clock charged them." });
    }

    /// <summary>
    /// Splits <paramref name="epochSeconds"/> into a step: step = epoch / floor(images / batch); host data
    /// loading hidden (0); h2d = the batch over the link once; loss 0; optimizer = 5 passes over the
    /// parameters at device memory bandwidth; the rest is compute, forward 1/3 and backward 2/3 (backward
    /// does twice forward's FLOPs).
    /// </summary>
    public static SingleStep FromEpoch(double epochSeconds, ModelState model, ScalingSettings s, Link link)
    {
        if (!(epochSeconds > 0)) throw new ArgumentException($"--single-epoch-seconds must be positive, got {epochSeconds}.");
        var inv = CultureInfo.InvariantCulture;
        int steps = s.SingleSteps;
        double step = epochSeconds / steps;
        long h2dBytes = (long)s.BatchSize * s.InputBytesPerImage;
        double h2d = link.HostToDevice(h2dBytes);
        double optimizer = OptimizerPasses * (double)model.ParameterBytes / (s.MemoryGBs * 1e9);
        double compute = step - h2d - optimizer;
        if (compute <= 0) throw new ArgumentException($"A single step of {1000 * step:F3} ms is shorter than its h2d and optimizer alone ({1000 * (h2d + optimizer):F3} ms).");
        var phases = PhaseClock.Phases.ToDictionary(p => p, _ => 0.0);
        phases["h2d"] = h2d;
        phases["optimizer"] = optimizer;
        phases["forward"] = compute / 3;
        phases["backward"] = 2 * compute / 3;
        var assumptions = new[]
        {
            string.Format(inv, "Single step = epoch / steps = {0:F3} s / {1} = {2:F2} ms (steps = floor({3:N0} / {4}), drop_last).", epochSeconds, steps, 1000 * step, s.TrainImages, s.BatchSize),
            "Single step split by assumption (no measured phases): host data loading is hidden behind compute (0 ms; DataLoader workers prefetch); loss 0 ms.",
            string.Format(inv, "h2d = the batch's fp32 input ({0:F2} MB) crossing the host link once = {1:F2} ms.", s.BatchSize * (double)s.InputBytesPerImage / 1e6, 1000 * h2d),
            string.Format(inv, "optimizer = SGD (momentum, weight decay), {0} fused passes over {1:F1} MB at {2:G4} GB/s device memory bandwidth = {3:F2} ms.", OptimizerPasses, model.ParameterBytes / 1e6, s.MemoryGBs, 1000 * optimizer),
            string.Format(inv, "The remaining {0:F2} ms are compute: forward 1/3 = {1:F2} ms, backward 2/3 = {2:F2} ms (backward = backward-data + backward-weight, twice forward's FLOPs).", 1000 * compute, 1000 * compute / 3, 2000 * compute / 3),
        };
        return new SingleStep(phases, h2dBytes, assumptions);
    }
}
