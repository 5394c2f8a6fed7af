using System.Globalization;
using System.Text;
using System.Text.Json.Serialization;
using Engine.Comm;
using Engine.Runner.Compare;
using Engine.Runner.Scaling;
using Engine.Runner.Training;

namespace Engine.Runner.Sweep;

/// <summary>One DDP run of a sweep: its link and bucket cap, what it measured per step, and what the scaling model predicted for it.</summary>
public sealed record SweepPoint(
    [property: JsonPropertyName("link")] string Link,
    [property: JsonPropertyName("link_mbit")] double LinkMbit,
    [property: JsonPropertyName("bucket_mb")] double BucketMb,
    [property: JsonPropertyName("buckets")] int Buckets,
    [property: JsonPropertyName("step_seconds")] double StepSeconds,
    [property: JsonPropertyName("backward_seconds")] double BackwardSeconds,
    [property: JsonPropertyName("exposed_sync_seconds")] double ExposedSeconds,
    [property: JsonPropertyName("hidden_sync_seconds")] double HiddenSeconds,
    [property: JsonPropertyName("predicted_step_seconds")] double PredictedStepSeconds,
    [property: JsonPropertyName("predicted_exposed_sync_seconds")] double PredictedExposedSeconds,
    [property: JsonPropertyName("predicted_hidden_sync_seconds")] double PredictedHiddenSeconds)
{
    /// <summary>Share of the all-reduce time that ran behind backward.</summary>
    [JsonIgnore]
    public double HiddenFraction => Fraction(HiddenSeconds, ExposedSeconds);

    [JsonIgnore]
    public double PredictedHiddenFraction => Fraction(PredictedHiddenSeconds, PredictedExposedSeconds);

    private static double Fraction(double hidden, double exposed) => hidden + exposed > 0 ? hidden / (hidden + exposed) : 0;
}

/// <summary>What <c>engine sweep --output</c> writes.</summary>
public sealed record SweepResult(
    [property: JsonPropertyName("nodes")] int Nodes,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("parameters")] long Parameters,
    [property: JsonPropertyName("single")] RunResult Single,
    [property: JsonPropertyName("points")] IReadOnlyList<SweepPoint> Points);

/// <summary>
/// <c>engine sweep</c>: DDP on emulated nodes at each link rate and bucket cap, one run per pair, so
/// that step time and the share of the all-reduce hidden behind backward can be drawn against
/// bandwidth; one single-device run first gives the scaling model its input, and each point carries
/// the model's prediction for the same link.
/// </summary>
public static class LinkSweep
{
    /// <summary>
    /// The bucket caps a sweep tries when none are given: the one <c>engine compare</c> picks to show
    /// overlap (a few buckets), and the default cap (for a small model, one bucket: nothing to overlap).
    /// </summary>
    public static IReadOnlyList<double> DefaultBuckets(long parameters, double defaultMb)
        => new[] { Comparison.BucketMbShowingOverlap(parameters, defaultMb), defaultMb }.Distinct().ToArray();

    /// <exception cref="ArgumentException">Fewer than two nodes, no link, or a cap that is not a positive number of MiB.</exception>
    public static void CheckOptions(int nodes, IReadOnlyList<LinkRate> links, IReadOnlyList<double>? bucketsMb)
    {
        if (nodes < 2) throw new ArgumentException($"--emulate-nodes must be at least 2 for a sweep (DDP needs two ranks on two nodes), got {nodes}.");
        if (links.Count == 0) throw new ArgumentException("--links: give at least one rate (e.g. 4mbit,16mbit,64mbit).");
        if (bucketsMb is not null && (bucketsMb.Count == 0 || bucketsMb.Any(b => !(b > 0) || !double.IsFinite(b))))
            throw new ArgumentException($"--bucket-caps: every cap must be a positive number of MiB, got '{string.Join(",", bucketsMb)}'.");
    }

    public static SweepResult Run(TrainOptions baseOptions, int nodes, IReadOnlyList<LinkRate> links, IReadOnlyList<double>? bucketsMb, TextWriter progress)
    {
        CheckOptions(nodes, links, bucketsMb);
        (baseOptions with { Mode = TrainingMode.Single, Devices = null }).Validate();

        progress.WriteLine("== sweep: single (the model's input)");
        RunResult single = Comparison.RunInProcess(baseOptions with { Mode = TrainingMode.Single, Devices = null, Output = null, Save = null, Trace = null }, progress);
        IReadOnlyList<double> buckets = bucketsMb ?? DefaultBuckets(single.Parameters, baseOptions.BucketMb);
        var points = new List<SweepPoint>();
        foreach (double bucket in buckets)
        {
            foreach (LinkRate link in links)
            {
                progress.WriteLine(string.Format(CultureInfo.InvariantCulture, "== sweep: ddp on {0} nodes, links of {1}, --bucket-mb {2:0.####}", nodes, link, bucket));
                TrainOptions ddp = baseOptions with { Mode = TrainingMode.Ddp, Devices = null, Save = null, Output = null, Trace = null, BucketMb = bucket };
                RunResult run = Comparison.RunDdp(ddp, new LaunchOptions(1) { EmulatedNodes = nodes, Link = link }, progress);
                points.Add(Point(single, run, nodes, link, bucket));
            }
        }
        return new SweepResult(nodes, $"{baseOptions.Model} width {baseOptions.Width}", single.Parameters, single, points);
    }

    /// <summary>A point from a ddp run on emulated nodes and the model's prediction for it (same single step, same link).</summary>
    public static SweepPoint Point(RunResult single, RunResult ddp, int nodes, LinkRate link, double bucketMb)
    {
        Breakdown b = ddp.Breakdown ?? throw new ArgumentException("the ddp run has no breakdown.");
        var modes = new List<ModeResult> { new("single", 1, single.MeanEpochSeconds, null, null, single), new("ddp", nodes, ddp.MeanEpochSeconds, null, null, ddp) };
        (Link devices, Link? network) = Scaling.Link.Resolve(link.ToString());
        ModePrediction p = ScalingReport.Predict(new ComparisonResult(modes, [], link.ToString()), devices, new ScalingSettings(), network).Prediction.Ddp;
        return new SweepPoint(link.ToString(), link.BitsPerSecond / 1e6, bucketMb, b.GradientBuckets, b.StepSeconds, b.Phases["backward"].SecondsPerStep,
            b.Phases["grad_sync"].SecondsPerStep, b.GradSyncHiddenSecondsPerStep, p.StepSeconds, p["grad_sync"], p.HiddenSeconds);
    }

    /// <summary>One row per point: measured and predicted step, exposed and hidden sync, hidden fraction.</summary>
    public static string Table(SweepResult r)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(string.Format(inv, "DDP on {0} emulated nodes, {1} ({2:N0} parameters, {3} of gradient); single step {4:F1} ms. Per step, measured (predicted):",
            r.Nodes, r.Model, r.Parameters, Comparison.Bytes(r.Parameters * sizeof(float)), 1000 * (r.Single.Breakdown?.StepSeconds ?? 0)));
        sb.AppendLine();
        sb.AppendLine("| link | bucket MiB | buckets | step ms | backward ms | exposed sync ms | hidden sync ms | hidden fraction |");
        sb.AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (SweepPoint p in r.Points)
        {
            sb.AppendLine(string.Format(inv, "| {0} | {1:0.####} | {2} | {3:F1} ({4:F1}) | {5:F1} | {6:F1} ({7:F1}) | {8:F1} ({9:F1}) | {10:F2} ({11:F2}) |",
                p.Link, p.BucketMb, p.Buckets, 1000 * p.StepSeconds, 1000 * p.PredictedStepSeconds, 1000 * p.BackwardSeconds,
                1000 * p.ExposedSeconds, 1000 * p.PredictedExposedSeconds, 1000 * p.HiddenSeconds, 1000 * p.PredictedHiddenSeconds, p.HiddenFraction, p.PredictedHiddenFraction));
        }
        return sb.ToString();
    }
}
