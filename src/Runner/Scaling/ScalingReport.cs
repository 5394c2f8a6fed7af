using System.Globalization;
using System.Text;
using System.Text.Json;
using Engine.Nn;
using Engine.Runner.Compare;
using Engine.Runner.Training;

namespace Engine.Runner.Scaling;

/// <summary>Tables of predictions, and predictions checked against an <c>engine compare</c> run.</summary>
public static class ScalingReport
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    private static readonly Dictionary<string, string> Short = new()
    {
        ["data"] = "data", ["h2d"] = "h2d", ["scatter"] = "scat", ["replicate"] = "repl", ["forward"] = "fwd", ["gather"] = "gath",
        ["loss"] = "loss", ["backward"] = "bwd", ["grad_sync"] = "sync", ["optimizer"] = "opt", ["dispatch"] = "disp",
        ["reduce_scatter"] = "rs", ["all_gather"] = "ag",
    };

    /// <summary>mode, predicted step (and its parts), predicted epoch; with <paramref name="measured"/> epoch seconds, those and the error.</summary>
    public static string Table(ScalingPrediction p, IReadOnlyDictionary<string, double>? measured = null)
    {
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.Append("| Mode   | N | Steps | Step ms | Parts of the step, ms | Epoch s |");
        sb.AppendLine(measured is null ? "" : " Measured s | Error |");
        sb.Append("| ------ | - | ----- | ------- | --------------------- | ------- |");
        sb.AppendLine(measured is null ? "" : " ---------- | ----- |");
        foreach (ModePrediction m in p.Modes)
        {
            string parts = string.Join(" + ", ScalingModel.Phases.Where(ph => m[ph] >= 0.005e-3).Select(ph => string.Format(Inv, "{0} {1:F2}", Short[ph], 1000 * m[ph])));
            if (m.HiddenSeconds > 0) parts += string.Format(Inv, " (sync hidden {0:F2})", 1000 * m.HiddenSeconds);
            sb.Append(string.Format(Inv, "| {0,-6} | {1} | {2,5} | {3,7:F2} | {4} | {5,7:F3} |", Engine.Runner.Training.TrainingMode.LabelOf(m.Mode), m.Devices, m.Steps, 1000 * m.StepSeconds, parts, m.EpochSeconds));
            if (measured is not null && measured.TryGetValue(m.Mode, out double e))
            {
                sb.Append(string.Format(Inv, " {0,10:F3} | {1,5} |", e, Error(m.EpochSeconds, e)));
            }
            else if (measured is not null)
            {
                sb.Append(" not run | - |");
            }
            sb.AppendLine();
        }
        return sb.ToString();
    }

    public static string Error(double predicted, double measured)
        => measured > 0 ? string.Format(Inv, "{0:+0.0;-0.0;0.0}%", 100 * (predicted / measured - 1)) : "-";


    public static ComparisonResult ReadComparison(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"--from {path}: no such file.", path);
        ComparisonResult? c;
        try
        {
            c = JsonSerializer.Deserialize<ComparisonResult>(File.ReadAllText(path), RunResult.Json);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"--from {path}: not a comparison's JSON ({e.Message}).");
        }
        if (c?.Modes is null || c.Modes.Count == 0) throw new ArgumentException($"--from {path}: the file holds no modes.");
        return c;
    }

    /// <summary>
    /// Takes the comparison's single-mode breakdown as the single step, predicts dp and ddp with the
    /// comparison's own settings (devices, batch, model, bucket cap, overlap, serial dispatch, shared
    /// device) and the given link, and prints predicted against measured per phase.
    /// </summary>
    /// <param name="network">The link between DDP's ranks when they ran on emulated nodes (<see cref="Link.Emulated"/>).</param>
    public static string FromComparison(ComparisonResult c, Link link, ScalingSettings tuning, Link? network = null)
    {
        (ScalingPrediction p, ScalingSettings s, ModelState model) = Predict(c, link, tuning, network);
        TrainOptions cfg = Find(c, "single").Run.Config;
        ModeResult? dp = c.Modes.FirstOrDefault(m => m.Mode == "dp"), ddp = c.Modes.FirstOrDefault(m => m.Mode == "ddp");
        var sb = new StringBuilder();
        sb.AppendLine(string.Format(Inv, "Predicted from the comparison's single run ({0} {1} width {2}, batch {3} per device, {4} devices{5}) over {6}{7}.",
            cfg.Model, cfg.Stem, cfg.Width, cfg.BatchSize, s.Devices, s.SharedDevice ? ", shared by every replica" : "", link.Describe(),
            network is null ? "" : "; DDP's ranks over " + network.Describe()));
        long parameters = Find(c, "single").Run.Parameters;
        if (parameters > 0 && parameters != model.ParameterCount)
        {
            sb.AppendLine(string.Format(Inv, "Warning: the run reports {0:N0} parameters, the model's count is {1:N0}.", parameters, model.ParameterCount));
        }
        foreach (var (predicted, measured) in Pairs(p, c)) sb.Append(PhaseTable(predicted, measured));
        sb.AppendLine();
        sb.AppendLine("Assumptions:");
        foreach (string a in p.Assumptions) sb.AppendLine("- " + a);
        return sb.ToString();
    }

    /// <summary>
    /// The model's dp and ddp predictions for a comparison: its single run's phases as the single step,
    /// the comparison's own settings, the given link (and DDP's network).
    /// </summary>
    public static (ScalingPrediction Prediction, ScalingSettings Settings, ModelState Model) Predict(ComparisonResult c, Link link, ScalingSettings tuning, Link? network = null)
    {
        ModeResult single = Find(c, "single");
        Breakdown sb0 = single.Run.Breakdown ?? throw new ArgumentException("The comparison's single run has no breakdown.");
        ModeResult? dp = c.Modes.FirstOrDefault(m => m.Mode == "dp");
        // DDP's settings (bucket cap, overlap), or those of the first other multi-process mode.
        ModeResult? ddp = c.Modes.FirstOrDefault(m => m.Mode == "ddp") ?? c.Modes.FirstOrDefault(m => m.Mode is not ("single" or "dp"));
        if (dp is null && ddp is null) throw new ArgumentException("The comparison holds no multi-device run (dp, ddp, zero1, zero2, fsdp) to check against.");
        TrainOptions cfg = single.Run.Config;
        int n = (dp ?? ddp)!.Devices;
        int singleSteps = Math.Max(1, sb0.Steps > 0 && single.Run.Epochs.Count > 0 ? single.Run.Epochs[0].Steps : 1);
        ScalingSettings s = tuning with
        {
            Devices = n,
            BatchSize = cfg.BatchSize,
            TrainImages = Math.Max(singleSteps * cfg.BatchSize, n * cfg.BatchSize),
            InputBytesPerImage = 3 * 32 * 32 * sizeof(float),
            BucketMb = ddp?.Run.Config.BucketMb ?? tuning.BucketMb,
            Overlap = !(ddp?.Run.Config.NoOverlap ?? !tuning.Overlap),
            DpSerialDispatch = dp?.Run.Config.DpSerialDispatch ?? false,
            SharedDevice = (dp?.Run.Breakdown?.Shared ?? false) || (ddp?.Run.Breakdown?.Shared ?? false),
        };
        ModelState model = ModelState.Of(ResNetConfig.Parse(cfg.Model, cfg.Stem, cfg.Width));
        return (ScalingModel.Predict(SingleStep.FromBreakdown(sb0), model, s, link, network), s, model);
    }

    /// <summary>Every multi-device mode of the comparison with the model's prediction for it, in the comparison's order.</summary>
    public static IEnumerable<(ModePrediction Predicted, ModeResult Measured)> Pairs(ScalingPrediction p, ComparisonResult c)
    {
        foreach (ModeResult m in c.Modes)
        {
            if (m.Mode == "single") continue;
            if (p.Modes.FirstOrDefault(x => x.Mode == m.Mode) is ModePrediction predicted) yield return (predicted, m);
        }
    }

    private static ModeResult Find(ComparisonResult c, string mode)
        => c.Modes.FirstOrDefault(m => m.Mode == mode) ?? throw new ArgumentException($"The comparison holds no {mode} run.");

    /// <summary>Per phase: predicted and measured ms and bytes, and the error; then step, hidden sync and epoch.</summary>
    public static string PhaseTable(ModePrediction predicted, ModeResult measuredMode)
    {
        Breakdown b = measuredMode.Run.Breakdown ?? throw new ArgumentException($"The comparison's {measuredMode.Mode} run has no breakdown.");
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine(string.Format(Inv, "{0} over {1} devices, per step:", Engine.Runner.Training.TrainingMode.LabelOf(predicted.Mode), measuredMode.Devices));
        sb.AppendLine(); // a Markdown table must not follow a paragraph line directly
        sb.AppendLine("| Phase       | Predicted ms | Measured ms | Error  | Predicted bytes | Measured bytes |");
        sb.AppendLine("| ----------- | ------------ | ----------- | ------ | --------------- | -------------- |");
        foreach (string phase in ScalingModel.Phases)
        {
            PhaseStat pr = predicted.Phases[phase];
            PhaseStat? me = b.Phases.TryGetValue(phase, out PhaseStat? x) ? x : null;
            if (phase == "dispatch" && pr.SecondsPerStep == 0) continue;
            sb.AppendLine(string.Format(Inv, "| {0,-11} | {1,12:F3} | {2,11} | {3,6} | {4,15} | {5,14} |", phase, 1000 * pr.SecondsPerStep,
                me is null ? "(in fwd/bwd)" : (1000 * me.SecondsPerStep).ToString("F3", Inv), me is null ? "-" : Error(pr.SecondsPerStep, me.SecondsPerStep),
                ScalingModel.Bytes(pr.BytesPerStep), me is null ? "-" : ScalingModel.Bytes(me.BytesPerStep)));
        }
        sb.AppendLine(string.Format(Inv, "| {0,-11} | {1,12:F3} | {2,11:F3} | {3,6} | {4,15} | {5,14} |", "step", 1000 * predicted.StepSeconds, 1000 * b.StepSeconds, Error(predicted.StepSeconds, b.StepSeconds), "", ""));
        sb.AppendLine(string.Format(Inv, "| {0,-11} | {1,12:F3} | {2,11:F3} | {3,6} | {4,15} | {5,14} |", "hidden comm", 1000 * predicted.HiddenSeconds, 1000 * Comparison.HiddenSeconds(b), Error(predicted.HiddenSeconds, Comparison.HiddenSeconds(b)), "", ""));
        int steps = measuredMode.Run.Epochs.Count > 0 ? measuredMode.Run.Epochs[0].Steps : predicted.Steps;
        double epoch = measuredMode.MeanEpochSeconds;
        sb.AppendLine(string.Format(Inv, "Epoch: predicted {0} steps x {1:F3} ms = {2:F3} s; measured {3:F3} s (mean over all epochs, like the breakdown's steps), error {4}. The measured epoch also holds the host time between steps that no phase is charged with.",
            steps, 1000 * predicted.StepSeconds, steps * predicted.StepSeconds, epoch, Error(steps * predicted.StepSeconds, epoch)));
        return sb.ToString();
    }
}
