using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Engine.Comm;
using Engine.Runner.Training;

namespace Engine.Runner.Compare;

/// <summary>One mode's run in a comparison.</summary>
public sealed record ModeResult(
    [property: JsonPropertyName("mode")] string Mode,
    [property: JsonPropertyName("devices")] int Devices,
    [property: JsonPropertyName("mean_epoch_seconds")] double MeanEpochSeconds,
    [property: JsonPropertyName("speedup_vs_single")] double? Speedup,
    [property: JsonPropertyName("scaling_efficiency")] double? Efficiency,
    [property: JsonPropertyName("run")] RunResult Run)
{
    /// <summary>How tables and sentences print the mode (DDP, ZeRO-2); the name itself for a mode this build does not know.</summary>
    [JsonIgnore]
    public string Label => TrainingMode.LabelOf(Mode);
}

/// <summary>What <c>engine compare --output</c> writes.</summary>
/// <param name="DdpLink">The rate of the links between the emulated nodes DDP's ranks ran on (<c>8mbit</c>), or null over loopback.</param>
public sealed record ComparisonResult(
    [property: JsonPropertyName("modes")] IReadOnlyList<ModeResult> Modes,
    [property: JsonPropertyName("explanation")] IReadOnlyList<string> Explanation,
    [property: JsonPropertyName("ddp_link")] string? DdpLink = null);

/// <summary>
/// <c>engine compare</c>: single, dp and ddp with identical settings (ddp through the launcher, as
/// torchrun would), then the seed's table and each mode's breakdown with a few sentences on what
/// dominates its overhead.
/// </summary>
public static class Comparison
{
    /// <param name="reportDir">With a folder: each mode also writes a trace, and report.md with charts goes there.</param>
    /// <param name="chooseBucket">No --bucket-mb was given: when the whole gradient would fit DDP's first bucket, cut it into <see cref="DefaultBuckets"/> so that the overlap shows.</param>
    /// <param name="emulatedNodes">With a count above 0: DDP's ranks run on that many emulated nodes joined by links of <paramref name="link"/> (see <see cref="EmulatedCluster"/>).</param>
    /// <param name="modes">The modes to run, in order; the seed's three (single, dp, ddp) when null.</param>
    public static ComparisonResult Run(TrainOptions baseOptions, TextWriter stdout, TextWriter progress, string? reportDir = null, bool chooseBucket = false,
        int emulatedNodes = 0, LinkRate? link = null, IReadOnlyList<TrainingMode>? modes = null)
    {
        modes ??= TrainingMode.Seed;
        if (modes.Count == 0) throw new ArgumentException("--modes lists no mode.");
        // Everything a user can get wrong is refused before the first run starts.
        foreach (TrainingMode m in modes) (baseOptions with { Mode = m, Devices = m == TrainingMode.Dp ? baseOptions.Devices : null }).Validate();
        if (reportDir is not null) OutputPaths.CheckFolder("--report", reportDir);
        string? traceDir = null;
        try
        {
            if (reportDir is not null)
            {
                traceDir = Path.Combine(Path.GetTempPath(), $"engine-compare-traces-{Environment.ProcessId}-{Guid.NewGuid():N}");
                Directory.CreateDirectory(traceDir);
            }
            return RunModes(baseOptions, modes, stdout, progress, reportDir, traceDir, chooseBucket, new DdpPlacement(emulatedNodes, link));
        }
        finally
        {
            // The traces are copied into the report; their temporary folder goes whether the runs succeeded or not.
            if (traceDir is not null && Directory.Exists(traceDir)) Directory.Delete(traceDir, recursive: true);
        }
    }

    /// <summary>How many buckets the default compare cuts a gradient into that would otherwise fit one.</summary>
    public const int DefaultBuckets = 4;

    /// <summary>
    /// The bucket cap for a compare without --bucket-mb: the requested one, unless the whole gradient
    /// fits DDP's first bucket (then one all-reduce after backward and nothing to see overlap); in that
    /// case a cap that cuts it into <see cref="DefaultBuckets"/>.
    /// </summary>
    public static double BucketMbShowingOverlap(long parameters, double requestedMb)
    {
        double gradientMb = parameters * (double)sizeof(float) / (1024 * 1024);
        return gradientMb <= BucketPlan.FirstCapMb(requestedMb) ? gradientMb / DefaultBuckets : requestedMb;
    }

    /// <summary>Where DDP's ranks run: this machine's loopback, or <see cref="Nodes"/> emulated nodes over links of <see cref="Link"/>.</summary>
    private sealed record DdpPlacement(int Nodes, LinkRate? Link)
    {
        public LaunchOptions For(int ranks)
        {
            if (Nodes == 0) return new LaunchOptions(ranks);
            if (ranks % Nodes != 0) throw new ArgumentException($"ddp's {ranks} ranks do not spread evenly over --emulate-nodes {Nodes}: give a number of nodes that divides {ranks}.");
            return new LaunchOptions(ranks / Nodes) { EmulatedNodes = Nodes, Link = Link };
        }

        public string Describe(int ranks) => Nodes == 0 ? $"{ranks} ranks through engine launch"
            : $"{ranks} ranks through engine launch on {Nodes} emulated nodes, links of {Link} each way";
    }

    private static ComparisonResult RunModes(TrainOptions baseOptions, IReadOnlyList<TrainingMode> modes, TextWriter stdout, TextWriter progress, string? reportDir, string? traceDir,
        bool chooseBucket, DdpPlacement placement)
    {
        string? TraceFor(TrainingMode mode) => traceDir is null ? null : Path.Combine(traceDir, $"trace_{mode.Name}.json");
        TrainOptions dpOptions = (baseOptions with { Mode = TrainingMode.Dp }).ResolveDevices();
        string[] replicas = dpOptions.DeviceList();
        int n = replicas.Length;
        LaunchOptions launch = placement.For(n); // refused here, before the first run, if the ranks do not fit the nodes
        TrainOptions multiBase = baseOptions;
        if (chooseBucket && modes.Any(m => m.MultiProcess))
        {
            long parameters = ModelParameters(baseOptions);
            if (BucketMbShowingOverlap(parameters, baseOptions.BucketMb) is double mb && mb != baseOptions.BucketMb)
            {
                progress.WriteLine(string.Format(CultureInfo.InvariantCulture, "compare: the whole gradient ({0}) fits one bucket, which leaves nothing to overlap; --bucket-mb {1:0.####} cuts it into {2} (pass --bucket-mb to choose).",
                    Bytes(parameters * sizeof(float)), mb, DefaultBuckets));
                multiBase = baseOptions with { BucketMb = mb };
            }
        }
        var runs = new List<(TrainingMode Mode, int Devices, RunResult Run)>();
        foreach (TrainingMode mode in modes)
        {
            if (mode == TrainingMode.Single)
            {
                progress.WriteLine("== compare: single");
                runs.Add((mode, 1, RunInProcess(baseOptions with { Mode = mode, Devices = null, Output = null, Save = null, Trace = TraceFor(mode) }, progress)));
            }
            else if (!mode.MultiProcess)
            {
                progress.WriteLine($"== compare: {mode} over {string.Join(",", replicas)}");
                runs.Add((mode, n, RunInProcess(dpOptions with { Mode = mode, Output = null, Save = null, Trace = TraceFor(mode) }, progress)));
            }
            else
            {
                progress.WriteLine($"== compare: {mode}, {placement.Describe(n)}");
                runs.Add((mode, n, RunDdp(multiBase with { Mode = mode, Devices = null, Save = null, Device = DdpDevice(baseOptions, replicas), Trace = TraceFor(mode) }, launch, progress)));
            }
        }

        double? single = runs.FirstOrDefault(r => r.Mode == TrainingMode.Single).Run?.MeanEpochSeconds;
        var results = runs.Select(r => new ModeResult(r.Mode.Name, r.Devices, r.Run.MeanEpochSeconds,
            r.Mode == TrainingMode.Single || single is null ? null : single / r.Run.MeanEpochSeconds,
            r.Mode == TrainingMode.Single || single is null ? null : single / r.Run.MeanEpochSeconds / r.Devices, r.Run)).ToList();
        var explanation = Explain(results);
        var result = new ComparisonResult(results, explanation, placement.Nodes > 0 ? placement.Link?.ToString() : null);
        stdout.Write(Render(result));
        if (baseOptions.Output is not null)
        {
            AtomicFile.WriteAllText(baseOptions.Output, JsonSerializer.Serialize(result, RunResult.Json));
        }
        if (reportDir is not null)
        {
            var traces = modes.Select(TraceFor).OfType<string>().Where(File.Exists).ToList();
            var written = Report.ReportWriter.Write(result, reportDir, traces);
            progress.WriteLine($"report: {Path.Combine(reportDir, Report.ReportWriter.Markdown)} ({written.Count} files)");
        }
        return result;
    }

    /// <summary>The model's parameter count, from its shape alone (no device work).</summary>
    private static long ModelParameters(TrainOptions o)
    {
        using var device = Engine.Kernels.Device.Create("cpu");
        using var model = new ResNet(device, ResNetConfig.Parse(o.Model, o.Stem, o.Width));
        return model.Store.ParameterCount;
    }

    /// <summary>DDP ranks on the CPU when dp's replicas are CPUs; else each rank takes cuda:LOCAL_RANK (or shares cuda:0 when dp does).</summary>
    private static string DdpDevice(TrainOptions o, string[] replicas)
    {
        if (replicas.All(r => r == "cpu")) return "cpu";
        if (replicas.Distinct().Count() == 1) return replicas[0];
        return "auto";
    }

    internal static RunResult RunInProcess(TrainOptions o, TextWriter progress)
    {
        using Trainer t = o.Mode.CreateTrainer(o, TextWriter.Null, progress);
        return t.Run();
    }

    /// <summary>Runs <paramref name="o"/> through the launcher and reads rank 0's result.</summary>
    internal static RunResult RunDdp(TrainOptions o, LaunchOptions launch, TextWriter progress)
    {
        string json = Path.Combine(Path.GetTempPath(), $"engine-compare-{o.Mode}-{Environment.ProcessId}-{Guid.NewGuid():N}.json");
        try
        {
            var args = (o with { Output = json }).ToArgs();
            int code = Launcher.Run(launch, ProcessTarget.CurrentProcess(), args, TextWriter.Null, progress);
            if (code != 0) throw new InvalidOperationException($"the {o.Mode} run failed (launch exited with {code}); its ranks' errors are above.");
            return JsonSerializer.Deserialize<RunResult>(File.ReadAllText(json), RunResult.Json)
                ?? throw new InvalidOperationException($"the {o.Mode} run wrote no result to {json}.");
        }
        finally
        {
            File.Delete(json);
        }
    }

    public static string Render(ComparisonResult c)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine();
        sb.AppendLine("| Mode   | Avg Epoch Time | Speedup vs Single | Scaling Efficiency |");
        sb.AppendLine("| ------ | -------------- | ----------------- | ------------------ |");
        foreach (ModeResult m in c.Modes)
        {
            string speed = m.Speedup is double s ? string.Format(inv, "{0:F2}x ({1})", s, s < 1 ? "slower" : "faster") : "-";
            string eff = m.Efficiency is double e ? string.Format(inv, "{0:F0}%", 100 * e) : "-";
            sb.AppendLine(string.Format(inv, "| {0,-6} | {1,12:F3} s | {2,-17} | {3,-18} |", m.Label, m.MeanEpochSeconds, speed, eff));
        }
        sb.AppendLine();
        sb.AppendLine("Per step, milliseconds (bytes moved per step):");
        sb.Append(string.Format(inv, "{0,-12}", "phase"));
        foreach (ModeResult m in c.Modes) sb.Append(string.Format(inv, "{0,26}", $"{m.Label} ({m.Devices})"));
        sb.AppendLine();
        foreach (string phase in PhaseClock.Phases)
        {
            sb.Append(string.Format(inv, "{0,-12}", phase));
            foreach (ModeResult m in c.Modes)
            {
                PhaseStat p = m.Run.Breakdown!.Phases[phase];
                sb.Append(string.Format(inv, "{0,26}", $"{1000 * p.SecondsPerStep:F2} ({Bytes(p.BytesPerStep)})"));
            }
            sb.AppendLine();
        }
        sb.Append(string.Format(inv, "{0,-12}", "step"));
        foreach (ModeResult m in c.Modes) sb.Append(string.Format(inv, "{0,26}", $"{1000 * m.Run.Breakdown!.StepSeconds:F2}"));
        sb.AppendLine();
        sb.Append(string.Format(inv, "{0,-12}", "images/step"));
        foreach (ModeResult m in c.Modes) sb.Append(string.Format(inv, "{0,26}", Report.ReportText.ImagesPerStep(m)));
        sb.AppendLine();
        sb.Append(string.Format(inv, "{0,-12}", "us/image"));
        foreach (ModeResult m in c.Modes) sb.Append(string.Format(inv, "{0,26:F1}", 1e6 * m.Run.Breakdown!.StepSeconds / Report.ReportText.ImagesPerStep(m)));
        sb.AppendLine();
        sb.Append(string.Format(inv, "{0,-12}", "hidden comm"));
        foreach (ModeResult m in c.Modes) sb.Append(string.Format(inv, "{0,26}", $"{1000 * HiddenSeconds(m.Run.Breakdown!):F2}"));
        sb.AppendLine();
        if (c.Modes.Any(m => m.Run.Memory is { Count: > 0 }))
        {
            sb.AppendLine();
            sb.AppendLine("Device memory per rank after training (rank 0; DP: device 0), MiB, and the peak during training:");
            sb.Append(string.Format(inv, "{0,-12}", "held"));
            foreach (ModeResult m in c.Modes) sb.Append(string.Format(inv, "{0,26}", $"{m.Label} ({m.Devices})"));
            sb.AppendLine();
            foreach (var (name, value) in MemoryRows)
            {
                sb.Append(string.Format(inv, "{0,-12}", name));
                foreach (ModeResult m in c.Modes) sb.Append(string.Format(inv, "{0,26}", m.Run.Memory is { Count: > 0 } mem ? $"{value(mem[0]) / (1024.0 * 1024):F3}" : "-"));
                sb.AppendLine();
            }
        }
        if (c.Modes.Any(m => m.Run.Breakdown!.Shared))
        {
            sb.AppendLine();
            sb.AppendLine("Note: replicas share one physical device in this run (CPU accelerators, or one GPU used twice), so parallel speedup is not expected; the breakdown still shows what each mode adds.");
        }
        sb.AppendLine();
        foreach (string line in c.Explanation) sb.AppendLine(line);
        return sb.ToString();
    }


    /// <summary>The rows of the memory table: the ZeRO paper's model-state split, then what else the device holds.</summary>
    public static readonly IReadOnlyList<(string Name, Func<RankMemory, long> Value)> MemoryRows = new (string, Func<RankMemory, long>)[]
    {
        ("parameters", m => m.Parameters), ("gradients", m => m.Gradients), ("optimizer", m => m.OptimizerState),
        ("comm", m => m.Communication), ("activations", m => m.Activations), ("peak", m => m.Peak),
    };

    /// <summary>Collective seconds per step that ran under compute, over every communication phase.</summary>
    public static double HiddenSeconds(Breakdown b) => b.HiddenSecondsPerStep.Count > 0 ? b.HiddenSecondsPerStep.Values.Sum() : b.GradSyncHiddenSecondsPerStep;

    /// <summary>Hidden seconds per step of one phase (results written before per-phase hiding report grad_sync only).</summary>
    public static double HiddenSeconds(Breakdown b, string phase) => b.HiddenSecondsPerStep.TryGetValue(phase, out double h) ? h
        : phase == "grad_sync" ? b.GradSyncHiddenSecondsPerStep : 0;

    /// <summary>Bytes of model state (parameters, gradients, optimizer state) on rank 0, or null without a memory record.</summary>
    public static long? ModelStateBytes(RunResult r) => r.Memory is { Count: > 0 } m ? m[0].Parameters + m[0].Gradients + m[0].OptimizerState : null;

    public static string Bytes(long b) => b switch
    {
        0 => "0",
        < 1024 * 1024 => string.Format(CultureInfo.InvariantCulture, "{0:F1} KB", b / 1024.0),
        _ => string.Format(CultureInfo.InvariantCulture, "{0:F1} MB", b / (1024.0 * 1024)),
    };

    private static readonly string[] Compute = { "forward", "backward", "loss", "optimizer" };

    /// <summary>What a mode's sentence in <see cref="Explain"/> (<see cref="TrainingMode.Explain"/>) quotes of its measured run.</summary>
    public sealed class ModeFacts(ModeResult m, Breakdown b)
    {
        public int Devices => m.Devices;

        /// <summary>A phase's bytes per rank and step, e.g. "1.2 MB".</summary>
        public string BytesOf(string phase) => Bytes(b.Phases[phase].BytesPerStep);

        /// <summary>A collective phase's bytes, time hidden under compute and time exposed, e.g. "1.2 MB per rank, 3.0 ms hidden under compute, 0.5 ms exposed".</summary>
        public string Exposed(string phase) => string.Format(CultureInfo.InvariantCulture, "{0} per rank, {1:F1} ms hidden under compute, {2:F1} ms exposed",
            BytesOf(phase), 1000 * HiddenSeconds(b, phase), 1000 * b.Phases[phase].SecondsPerStep);

        /// <summary>DDP's bucketed all-reduce: milliseconds of it hidden behind backward, and exposed after it, per step.</summary>
        public (double Hidden, double Exposed) GradSyncMs => (1000 * b.GradSyncHiddenSecondsPerStep, 1000 * b.Phases["grad_sync"].SecondsPerStep);

        /// <summary>"; it holds 1.2 MB of parameters, gradients and momentum per rank", or "" when the run recorded no memory.</summary>
        public string State => ModelStateBytes(m.Run) is long held ? $"; it holds {Bytes(held)} of parameters, gradients and momentum per rank" : "";
    }

    /// <summary>Plain sentences from the measured numbers: what each mode adds on top of computing, and what dominates it.</summary>
    public static List<string> Explain(IReadOnlyList<ModeResult> modes)
    {
        var inv = CultureInfo.InvariantCulture;
        var lines = new List<string>();
        foreach (ModeResult m in modes)
        {
            Breakdown b = m.Run.Breakdown!;
            double step = b.StepSeconds;
            var overhead = b.Phases.Where(p => !Compute.Contains(p.Key)).OrderByDescending(p => p.Value.SecondsPerStep).ToList();
            double over = overhead.Sum(p => p.Value.SecondsPerStep);
            var top = overhead.Take(2).Where(p => p.Value.SecondsPerStep > 0).Select(p => $"{p.Key} {1000 * p.Value.SecondsPerStep:F1} ms").ToList();
            string what = TrainingMode.Named(m.Mode)?.Explain(new ModeFacts(m, b)) ?? $"{m.Label} over {m.Devices} devices";
            lines.Add(string.Format(inv, "- {0}. Outside compute it spends {1:F1} ms of its {2:F1} ms step ({3:F0}%){4}.",
                what, 1000 * over, 1000 * step, step > 0 ? 100 * over / step : 0, top.Count > 0 ? ", mostly " + string.Join(" and ", top) : ""));
        }
        ModeResult? dp = modes.FirstOrDefault(m => m.Mode == TrainingMode.Dp.Name), ddp = modes.FirstOrDefault(m => m.Mode == TrainingMode.Ddp.Name);
        if (dp is not null && ddp is not null)
        {
            Breakdown a = dp.Run.Breakdown!, b = ddp.Run.Breakdown!;
            double ratio = dp.MeanEpochSeconds / ddp.MeanEpochSeconds;
            double dpComm = new[] { "scatter", "replicate", "gather", "grad_sync" }.Sum(p => a.Phases[p].SecondsPerStep);
            double ddpComm = b.Phases["replicate"].SecondsPerStep + b.Phases["grad_sync"].SecondsPerStep;
            double dpCompute = Compute.Sum(p => a.Phases[p].SecondsPerStep), ddpCompute = Compute.Sum(p => b.Phases[p].SecondsPerStep);
            string verdict = ratio >= 1
                ? string.Format(inv, "Here DP's epoch takes {0:F2}x DDP's: its copies through device 0 cost {1:F1} ms per step against DDP's {2:F1} ms of exposed all-reduce and buffer broadcast, and its compute phases take {3:F1} ms against DDP's {4:F1} ms.", ratio, 1000 * dpComm, 1000 * ddpComm, 1000 * dpCompute, 1000 * ddpCompute)
                : string.Format(inv, "Here DP is faster than DDP ({0:F2}x DDP's epoch time). Its copies through device 0 cost only {1:F1} ms per step at this model size, while DDP spends {2:F1} ms in exposed all-reduce and broadcast and {3:F1} ms computing against DP's {4:F1} ms{5}.", ratio, 1000 * dpComm, 1000 * ddpComm, 1000 * ddpCompute, 1000 * dpCompute,
                    b.Shared ? ": DDP's processes share one physical device and compete for it, and most of an exposed all-reduce is one rank waiting for the other" : "");
            lines.Add("- " + verdict + " In general DP moves parameters out and gradients in through one device and one process every step, while DDP moves only gradients, spread evenly over the ring, and overlaps them with backward; which one wins depends on those bytes against the compute they run beside.");
        }
        return lines;
    }
}
