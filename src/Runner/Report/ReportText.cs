using System.Text;
using Engine.Runner.Compare;
using Engine.Runner.Training;
using static System.FormattableString;

namespace Engine.Runner.Report;

/// <summary>report.md: the seed's table, each mode's breakdown, and why DP and DDP differ, all from the measured numbers.</summary>
internal static class ReportText
{
    /// <summary>Said whenever a run's replicas took turns on one physical device.</summary>
    public const string SharedDeviceNote =
        "The replicas in this run shared one physical device (CPU accelerators, or one GPU used twice), so DP and DDP are not expected to be faster than single here.";

    /// <summary>What each phase of a step holds, in the order <see cref="PhaseClock.Phases"/> lists them.</summary>
    public static readonly IReadOnlyDictionary<string, string> PhaseMeaning = new Dictionary<string, string>
    {
        ["data"] = "gathering the batch's uint8 images and labels on the host and drawing its crops and flips",
        ["h2d"] = "copying the batch from host memory to the device, and the crop / flip / normalise kernel",
        ["scatter"] = "DP: splitting the batch from device 0 to the other replicas, and the loss gradient back out to them",
        ["replicate"] = "DP: copying every parameter and buffer from device 0 to the other replicas; DDP: broadcasting rank 0's batch-norm buffers",
        ["forward"] = "the model's forward pass",
        ["gather"] = "DP: copying every replica's outputs to device 0",
        ["loss"] = "cross-entropy and its gradient",
        ["backward"] = "the model's backward pass (DDP's hidden all-reduce runs during it)",
        ["grad_sync"] = "DP: summing every replica's gradients onto device 0; DDP and ZeRO-1: waiting after backward for the all-reduce still in flight (the exposed part)",
        ["reduce_scatter"] = "ZeRO-2 and FSDP: waiting after backward for the gradient reduce-scatters still in flight (each rank receives the mean of its shard)",
        ["optimizer"] = "SGD with momentum and weight decay (ZeRO and FSDP: on this rank's shard only)",
        ["all_gather"] = "ZeRO-1/2: all-gathering the updated parameter shards; FSDP: the time forward and backward waited for a unit's parameters (the exposed part)",
    };

    public static string Build(ComparisonResult c, IReadOnlyList<string> traceNames)
    {
        var sb = new StringBuilder();
        ModeResult first = c.Modes[0];
        TrainOptions cfg = first.Run.Config;
        bool shared = c.Modes.Any(m => m.Run.Breakdown!.Shared);

        sb.AppendLine("# Single device vs DataParallel vs DistributedDataParallel");
        sb.AppendLine();
        sb.AppendLine(Invariant($"{cfg.Model} ({first.Run.Parameters:N0} parameters) on {first.Run.Dataset}, {cfg.Epochs} epoch(s), batch size {cfg.BatchSize} per device. ")
            + string.Join("; ", c.Modes.Select(m => Invariant($"{m.Label}: {m.Devices} device(s) on {m.Run.Device}"))) + ".");
        sb.AppendLine();

        AppendResults(sb, c, shared);
        AppendBreakdown(sb, c);
        AppendWhy(sb, c);
        AppendCommunication(sb, c);
        AppendMemory(sb, c);
        AppendModel(sb, c);
        AppendTraces(sb, traceNames);
        return sb.ToString();
    }

    /// <summary>
    /// Memory per rank by use against the ZeRO paper's formulas (SGD with momentum, fp32: 4 bytes each of
    /// parameters, gradients and momentum per parameter), and what the sharded modes pay for it in bytes moved.
    /// </summary>
    private static void AppendMemory(StringBuilder sb, ComparisonResult c)
    {
        if (!c.Modes.Any(m => m.Run.Memory is { Count: > 0 })) return;
        sb.AppendLine("## Memory per rank");
        sb.AppendLine();
        sb.AppendLine("What each rank holds after training (rank 0; DP: device 0), by use, and the peak during training. The ZeRO paper's model state per parameter, " +
            "for SGD with momentum in fp32 on N ranks: DDP 12 bytes, ZeRO-1 8 + 4/N, ZeRO-2 4 + 8/N, FSDP (ZeRO-3) 12/N. Parameters include the BN running statistics; " +
            "sharded modes pad each bucket or unit to a multiple of N; communication buffers are ZeRO-2's gradient buckets and FSDP's gathered units.");
        sb.AppendLine();
        sb.AppendLine("| Use | " + string.Join(" | ", c.Modes.Select(ModeHeader)) + " |");
        sb.AppendLine("| --- |" + string.Concat(c.Modes.Select(_ => " --- |")));
        foreach (var (name, value) in Comparison.MemoryRows)
        {
            sb.AppendLine($"| {name} | " + string.Join(" | ", c.Modes.Select(m => m.Run.Memory is { Count: > 0 } mem ? Comparison.Bytes(value(mem[0])) : "-")) + " |");
        }
        sb.AppendLine("| model state per parameter | " + string.Join(" | ", c.Modes.Select(m => Comparison.ModelStateBytes(m.Run) is long held && m.Run.Parameters > 0
            ? Invariant($"{(double)held / m.Run.Parameters:F2} B") : "-")) + " |");
        sb.AppendLine("| bytes moved per step | " + string.Join(" | ", c.Modes.Select(m => Comparison.Bytes(TotalBytes(m.Run.Breakdown!)))) + " |");
        sb.AppendLine();
        sb.AppendLine($"![Device memory per rank by use]({ReportWriter.MemoryChart})");
        sb.AppendLine();
    }

    private static void AppendResults(StringBuilder sb, ComparisonResult c, bool shared)
    {
        sb.AppendLine("## Results");
        sb.AppendLine();
        sb.AppendLine("| Mode | Avg Epoch Time | Speedup vs Single | Scaling Efficiency |");
        sb.AppendLine("| ------ | -------------- | ----------------- | ------------------ |");
        foreach (ModeResult m in c.Modes) sb.AppendLine(TableRow(m));
        sb.AppendLine();
        sb.AppendLine("Avg Epoch Time is the mean over all epochs, as the seed computes it; speedup is single's epoch time over the mode's, and scaling efficiency is speedup divided by the number of devices.");
        if (c.Modes.All(m => m.Run.MeanEpochSecondsExcludingFirst is not null))
        {
            sb.AppendLine("Without the first epoch (which pays for kernel compilation and warm-up): "
                + string.Join(", ", c.Modes.Select(m => Invariant($"{m.Label} {m.Run.MeanEpochSecondsExcludingFirst:F3} s"))) + ".");
        }
        sb.AppendLine();
        if (shared)
        {
            sb.AppendLine("> **Note.** " + SharedDeviceNote + " The replicas take turns on the same hardware, so a speedup near or below 1x and a low scaling efficiency are expected. "
                + "What the breakdown still shows is what each mode adds to a step: DP's scatter, replicate, gather and reduction through device 0, DDP's all-reduce and how much of it hides behind backward, "
                + "and the bytes each mode moves per step, which do not depend on the hardware.");
            sb.AppendLine();
        }
        sb.AppendLine($"![Mean epoch time per mode]({ReportWriter.EpochTimeChart})");
        sb.AppendLine();
    }

    /// <summary>One row of the seed's table, e.g. <c>| DP | 12.460 s | 0.51x (slower) | 25% (inefficient) |</c>.</summary>
    public static string TableRow(ModeResult m)
    {
        string speed = m.Speedup is double s ? Invariant($"{s:F2}x ({(s < 1 ? "slower" : "faster")})") : "-";
        string eff = m.Efficiency is double e ? Invariant($"{100 * e:F0}% ({Efficiency(e)})") : "-";
        return Invariant($"| {m.Label} | {m.MeanEpochSeconds:F3} s | {speed} | {eff} |");
    }

    private static string Efficiency(double e) => e switch
    {
        >= 0.75 => "efficient",
        >= 0.5 => "partial",
        _ => "inefficient",
    };

    private static void AppendBreakdown(StringBuilder sb, ComparisonResult c)
    {
        sb.AppendLine("## Where each step goes");
        sb.AppendLine();
        sb.AppendLine("Each training step is split into phases. At every phase boundary the devices are synchronised and the time since the previous boundary is charged to the phase, "
            + "so the phases add up to the step. Bytes are those the phase moved between devices (or host and device) per step; for DDP they are per rank.");
        sb.AppendLine();
        sb.AppendLine("| Phase | What it holds |");
        sb.AppendLine("| ----- | ------------- |");
        foreach (string phase in PhaseClock.Phases) sb.AppendLine($"| {phase} | {PhaseMeaning[phase]} |");
        sb.AppendLine();

        string header = "| Phase | " + string.Join(" | ", c.Modes.Select(ModeHeader)) + " |";
        string rule = "| ----- |" + string.Concat(c.Modes.Select(_ => " ---: |"));

        sb.AppendLine("Milliseconds per step (mean over the measured steps):");
        sb.AppendLine();
        sb.AppendLine(header);
        sb.AppendLine(rule);
        foreach (string phase in PhaseClock.Phases)
        {
            sb.AppendLine($"| {phase} | " + string.Join(" | ", c.Modes.Select(m => Ms(m.Run.Breakdown!.Phases[phase].SecondsPerStep))) + " |");
        }
        sb.AppendLine("| **step** | " + string.Join(" | ", c.Modes.Select(m => "**" + Ms(m.Run.Breakdown!.StepSeconds) + "**")) + " |");
        sb.AppendLine("| all-reduce hidden behind backward (not in the step) | " + string.Join(" | ", c.Modes.Select(m => Ms(m.Run.Breakdown!.GradSyncHiddenSecondsPerStep))) + " |");
        sb.AppendLine("| images per step | " + string.Join(" | ", c.Modes.Select(m => ImagesPerStep(m).ToString(System.Globalization.CultureInfo.InvariantCulture))) + " |");
        sb.AppendLine("| **step / images per step** | " + string.Join(" | ", c.Modes.Select(m => Invariant($"**{1e6 * m.Run.Breakdown!.StepSeconds / ImagesPerStep(m):F1} us/image**"))) + " |");
        sb.AppendLine();
        sb.AppendLine("A dp or ddp step trains on every device's batch, so compare modes per image (the last row, and the phase chart), not per step.");
        sb.AppendLine();

        sb.AppendLine("Bytes moved per step:");
        sb.AppendLine();
        sb.AppendLine(header);
        sb.AppendLine(rule);
        foreach (string phase in PhaseClock.Phases)
        {
            sb.AppendLine($"| {phase} | " + string.Join(" | ", c.Modes.Select(m => Comparison.Bytes(m.Run.Breakdown!.Phases[phase].BytesPerStep))) + " |");
        }
        sb.AppendLine("| **total** | " + string.Join(" | ", c.Modes.Select(m => "**" + Comparison.Bytes(TotalBytes(m.Run.Breakdown!)) + "**")) + " |");
        sb.AppendLine();
        sb.AppendLine($"![Phase time per step, stacked]({ReportWriter.PhasesChart})");
        sb.AppendLine();
        sb.AppendLine($"![Bytes moved per step by phase]({ReportWriter.BytesChart})");
        sb.AppendLine();
    }

    private static void AppendWhy(StringBuilder sb, ComparisonResult c)
    {
        ModeResult? dp = Find(c, "dp"), ddp = Find(c, "ddp");
        string title = dp is not null && ddp is not null
            ? $"## Why DP is {(dp.MeanEpochSeconds > ddp.MeanEpochSeconds ? "slower" : "faster")} than DDP here"
            : "## What each mode adds";
        sb.AppendLine(title);
        sb.AppendLine();
        foreach (string line in c.Explanation) sb.AppendLine(line);
        if (dp is not null && ddp is not null)
        {
            Breakdown a = dp.Run.Breakdown!, b = ddp.Run.Breakdown!;
            double diff = a.StepSeconds - b.StepSeconds;
            var deltas = PhaseClock.Phases
                .Select(p => (Phase: p, Delta: a.Phases[p].SecondsPerStep - b.Phases[p].SecondsPerStep))
                .Where(d => Math.Sign(d.Delta) == Math.Sign(diff) && Math.Abs(d.Delta) > 0.05 * Math.Abs(diff))
                .OrderByDescending(d => Math.Abs(d.Delta)).Take(4)
                .Select(d => Invariant($"{d.Phase} ({(d.Delta >= 0 ? "+" : "-")}{1000 * Math.Abs(d.Delta):F1} ms)")).ToList();
            string longer = diff >= 0 ? "longer" : "shorter";
            sb.AppendLine(Invariant($"- Per step, DP takes {1000 * a.StepSeconds:F1} ms and DDP {1000 * b.StepSeconds:F1} ms, so DP's step is {1000 * Math.Abs(diff):F1} ms {longer}")
                + (deltas.Count > 0 ? "; the difference is mostly " + string.Join(", ", deltas) + " (DP minus DDP)." : "."));
            sb.AppendLine(Invariant($"- DP moves {Comparison.Bytes(TotalBytes(a))} per step, all of it through device 0; each DDP rank moves {Comparison.Bytes(TotalBytes(b))}, ")
                + Invariant($"of which {Comparison.Bytes(b.Phases["grad_sync"].BytesPerStep)} is its share of the gradient all-reduce."));
        }
        sb.AppendLine();
        sb.AppendLine($"![Gradient synchronisation per step: hidden behind backward vs exposed]({ReportWriter.OverlapChart})");
        sb.AppendLine();
    }

    private static void AppendCommunication(StringBuilder sb, ComparisonResult c)
    {
        ModeResult? dp = Find(c, "dp"), ddp = Find(c, "ddp");
        long gradientBytes = c.Modes[0].Run.Parameters * sizeof(float);
        sb.AppendLine("## How DP and DDP communicate");
        sb.AppendLine();
        sb.AppendLine(Invariant($"Both split each global batch over the devices and keep one model copy per device; the model has {c.Modes[0].Run.Parameters:N0} parameters, so one full set of gradients is {Comparison.Bytes(gradientBytes)}. ")
            + "They differ in who owns the weights and in what crosses between devices every step.");
        sb.AppendLine();

        sb.Append("**DataParallel** (one process drives every device; device 0 owns the weights). Every step it scatters the batch from device 0 to the replicas, ");
        sb.Append("replicates every parameter and buffer from device 0 to the others (the optimizer only updates device 0's copy, so the copies are stale after every step), ");
        sb.Append("runs forward on each replica, gathers the outputs onto device 0 for the loss, scatters the loss gradient back, runs backward on each replica, ");
        sb.Append("and sums every replica's gradients back onto device 0 before the optimizer runs there. ");
        sb.Append("Everything goes in and out through device 0 and one host process, one transfer after another. ");
        sb.AppendLine("In PyTorch the replicas' forward and backward are launched from threads of that one Python process, which take turns holding the GIL, so even kernel launches are serialised.");
        if (dp is not null)
        {
            Breakdown b = dp.Run.Breakdown!;
            double comm = Seconds(b, "scatter", "replicate", "gather", "grad_sync");
            sb.AppendLine(Invariant($"In this run DP over {dp.Devices} devices moved, per step, {Comparison.Bytes(b.Phases["scatter"].BytesPerStep)} in scatter, ")
                + Invariant($"{Comparison.Bytes(b.Phases["replicate"].BytesPerStep)} in replicate, {Comparison.Bytes(b.Phases["gather"].BytesPerStep)} in gather and ")
                + Invariant($"{Comparison.Bytes(b.Phases["grad_sync"].BytesPerStep)} of gradients reduced onto device 0 ({Comparison.Bytes(TotalBytes(b))} in all), ")
                + Invariant($"and spent {1000 * comm:F1} ms of its {1000 * b.StepSeconds:F1} ms step on these four phases, none of it overlapped with compute."));
            sb.AppendLine(dp.Run.Config.DpSerialDispatch
                ? "This run drove every replica from one host thread (--dp-serial-dispatch), as the GIL effectively forces in PyTorch."
                : "This run drove each replica from its own host thread, which PyTorch's GIL does not allow; --dp-serial-dispatch reproduces PyTorch's one-thread dispatch.");
        }
        sb.AppendLine();

        sb.Append("**DistributedDataParallel** (one process per device; every rank owns a full copy of the weights). ");
        sb.Append("The copies start identical and stay identical because every rank applies the same averaged gradient with the same optimizer, so parameters never move: only gradients do. ");
        sb.Append("They are averaged with a ring all-reduce, in which each of the N ranks sends and receives 2(N-1)/N times the gradient size, whatever N is, and no rank is a bottleneck. ");
        sb.AppendLine("Gradients are grouped into buckets in the order backward produces them; a bucket's all-reduce starts as soon as its last gradient is ready, while backward is still computing earlier layers, so much of the communication is hidden behind compute.");
        if (ddp is not null)
        {
            Breakdown b = ddp.Run.Breakdown!;
            int n = ddp.Devices;
            long ring = n > 1 ? 2L * (n - 1) * gradientBytes / n : 0;
            double hidden = b.GradSyncHiddenSecondsPerStep, exposed = b.Phases["grad_sync"].SecondsPerStep;
            double total = hidden + exposed;
            sb.AppendLine(Invariant($"In this run DDP had {n} ranks: 2({n}-1)/{n} x {Comparison.Bytes(gradientBytes)} = {Comparison.Bytes(ring)} per rank per step by the formula, ")
                + Invariant($"{Comparison.Bytes(b.Phases["grad_sync"].BytesPerStep)} measured. Of its {1000 * total:F1} ms of all-reduce per step, {1000 * hidden:F1} ms ran hidden behind backward ")
                + Invariant($"and {1000 * exposed:F1} ms was exposed (waited for after backward){(total > 0 ? Invariant($", {100 * hidden / total:F0}% hidden") : "")}.")
                + (ddp.Run.Config.NoOverlap ? " Overlap was switched off for this run (--no-overlap), so every bucket waited for the end of backward." : "")
                + Invariant($" Buckets held up to {ddp.Run.Config.BucketMb:G} MB of gradients{(b.GradientBuckets > 0 ? Invariant($" ({b.GradientBuckets} bucket(s))") : "")}.")
                + (OneBucketNote(ddp) is string note ? " " + note : ""));
        }
        sb.AppendLine();

        if (dp is not null && ddp is not null)
        {
            Breakdown a = dp.Run.Breakdown!, b = ddp.Run.Breakdown!;
            sb.AppendLine("| Per step | DP | DDP (per rank) |");
            sb.AppendLine("| -------- | --: | --: |");
            sb.AppendLine($"| bytes moved, all phases | {Comparison.Bytes(TotalBytes(a))} | {Comparison.Bytes(TotalBytes(b))} |");
            sb.AppendLine($"| gradient bytes | {Comparison.Bytes(a.Phases["grad_sync"].BytesPerStep)} | {Comparison.Bytes(b.Phases["grad_sync"].BytesPerStep)} |");
            sb.AppendLine($"| parameter and buffer bytes | {Comparison.Bytes(a.Phases["replicate"].BytesPerStep)} | {Comparison.Bytes(b.Phases["replicate"].BytesPerStep)} |");
            sb.AppendLine($"| communication exposed in the step | {Ms(Seconds(a, "scatter", "replicate", "gather", "grad_sync"))} | {Ms(Seconds(b, "scatter", "replicate", "gather", "grad_sync"))} |");
            sb.AppendLine($"| all-reduce hidden behind backward | {Ms(a.GradSyncHiddenSecondsPerStep)} | {Ms(b.GradSyncHiddenSecondsPerStep)} |");
            sb.AppendLine();
        }
    }

    /// <summary>The scaling model's prediction for this very run, phase by phase beside what was measured.</summary>
    private static void AppendModel(StringBuilder sb, ComparisonResult c)
    {
        if (Find(c, "single") is null || c.Modes.All(m => m.Mode == "single")) return;
        (Scaling.Link devices, Scaling.Link? network) = Scaling.Link.Resolve(c.DdpLink ?? Scaling.Link.DefaultPreset);
        (Scaling.ScalingPrediction p, _, _) = Scaling.ScalingReport.Predict(c, devices, new Scaling.ScalingSettings(), network);
        sb.AppendLine("## The scaling model beside this run");
        sb.AppendLine();
        sb.AppendLine("The model (`engine model`, docs/MODEL.md) predicts DP's and DDP's phases from this run's single-device phases, the model's bytes and the link: "
            + devices.Describe() + (network is null ? "" : "; DDP's ranks over " + network.Describe())
            + Invariant($". `engine model --from compare.json --link {c.DdpLink ?? Scaling.Link.DefaultPreset}` prints the same tables with every assumption. ")
            + "A phase far off its prediction names the assumption that failed: on a shared CPU the compute phases are off because replicas compete for the cores, and an exposed all-reduce holds waiting for the other rank as well as transfer.");
        foreach (var (predicted, measured) in Scaling.ScalingReport.Pairs(p, c)) sb.Append(Scaling.ScalingReport.PhaseTable(predicted, measured));
        sb.AppendLine();
    }

    private static void AppendTraces(StringBuilder sb, IReadOnlyList<string> traceNames)
    {
        if (traceNames.Count == 0) return;
        sb.AppendLine("## Traces");
        sb.AppendLine();
        sb.AppendLine("Chrome-trace JSON files from this run (open them in Perfetto or chrome://tracing: one track per device or rank, one per communication stream):");
        sb.AppendLine();
        foreach (string t in traceNames) sb.AppendLine($"- [{t}]({t})");
        sb.AppendLine();
    }


    public static string ModeHeader(ModeResult m) => Invariant($"{m.Label} ({m.Devices})");

    /// <summary>
    /// Images one step of the mode trains on: the batch for single, --batch-size per device times the
    /// devices for dp and ddp (so per-image figures compare modes whose steps differ in size).
    /// </summary>
    public static int ImagesPerStep(ModeResult m) => m.Run.Config.BatchSize * (m.Mode == "single" ? 1 : m.Devices);

    /// <summary>
    /// Why a DDP run hid none of its all-reduce, when the reason is the bucket plan: with the whole
    /// gradient in one bucket, its all-reduce can only start once backward has produced the last
    /// gradient. Null when there was more than one bucket, or overlap was off.
    /// </summary>
    public static string? OneBucketNote(ModeResult ddp)
    {
        Breakdown b = ddp.Run.Breakdown!;
        if (ddp.Mode != "ddp" || b.GradientBuckets != 1 || ddp.Run.Config.NoOverlap) return null;
        long gradient = ddp.Run.Parameters * sizeof(float);
        return Invariant($"The whole gradient ({Comparison.Bytes(gradient)}) fits one bucket, so its all-reduce can start only when backward has finished: nothing can overlap. A --bucket-mb below {gradient / (1024.0 * 1024):0.###} splits it into buckets that start during backward.");
    }

    public static long TotalBytes(Breakdown b) => b.Phases.Values.Sum(p => p.BytesPerStep);

    private static double Seconds(Breakdown b, params string[] phases) => phases.Sum(p => b.Phases[p].SecondsPerStep);

    private static string Ms(double seconds) => Invariant($"{1000 * seconds:F2} ms");

    private static ModeResult? Find(ComparisonResult c, string mode) => c.Modes.FirstOrDefault(m => m.Mode == mode);
}
