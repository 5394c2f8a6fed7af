using System.Globalization;
using Engine.Runner.Training;

namespace Engine.Runner.Scaling;

/// <summary>One mode's predicted step: seconds and bytes per phase (the engine's phases plus DP's serial dispatch).</summary>
/// <param name="HiddenSeconds">DDP all-reduce time hidden behind backward (not part of the step).</param>
public sealed record ModePrediction(string Mode, int Devices, int Steps, IReadOnlyDictionary<string, PhaseStat> Phases, double HiddenSeconds)
{
    public double StepSeconds => Phases.Values.Sum(p => p.SecondsPerStep);
    public double EpochSeconds => Steps * StepSeconds;
    public double this[string phase] => Phases.TryGetValue(phase, out PhaseStat? p) ? p.SecondsPerStep : 0;
}

/// <summary>The three predictions and every assumption behind them, in the order they were made.</summary>
public sealed record ScalingPrediction(ModePrediction Single, ModePrediction Dp, ModePrediction Ddp, IReadOnlyList<string> Assumptions)
{
    /// <summary>The seed's follow-up: ZeRO-1, ZeRO-2 and FSDP, from the same inputs.</summary>
    public IReadOnlyList<ModePrediction> Sharded { get; init; } = Array.Empty<ModePrediction>();

    public IEnumerable<ModePrediction> Modes => new[] { Single, Dp, Ddp }.Concat(Sharded);
}

/// <summary>
/// Predicts single, DP and DDP steps on N devices from a single-device step, the model's parameter and
/// buffer bytes, and a link, by the algorithms' byte counts (design.md section 7): DP moves input,
/// parameters and gradients through device 0 serially every step; DDP moves 2(N-1)/N of the gradients
/// per rank in a ring, bucket by bucket, overlapping backward.
/// </summary>
public static class ScalingModel
{
    /// <summary>The engine's phases plus the host's serial kernel dispatch of DP's extra replicas.</summary>
    public static readonly string[] Phases = PhaseClock.Phases.Append("dispatch").ToArray();

    // Byte counts per step (the same numbers the engine's trainers charge to their phase clocks).

    /// <summary>DP scatter of the input: chunks 1..N-1 of the global batch (images fp32 and int32 labels) leave device 0.</summary>
    public static long DpInputScatterBytes(int n, int batch, int inputBytesPerImage) => (n - 1) * (long)batch * (inputBytesPerImage + sizeof(int));

    /// <summary>DP gather of the outputs to device 0, and the same bytes again when the output gradient is scattered back.</summary>
    public static long DpOutputBytes(int n, int batch, int classes) => (n - 1) * (long)batch * classes * sizeof(float);

    /// <summary>DP replicate: every parameter and buffer, from device 0 to each of the N-1 others.</summary>
    public static long DpReplicateBytes(int n, ModelState m) => (n - 1) * (m.ParameterCount + m.BufferCount) * sizeof(float);

    /// <summary>DP reduce: every other device's gradients onto device 0.</summary>
    public static long DpReduceBytes(int n, ModelState m) => (n - 1) * m.ParameterBytes;

    /// <summary>Ring all-reduce: each rank sends (and receives) 2(N-1)/N of the message (reduce-scatter then all-gather).</summary>
    public static double RingBytesPerRank(int n, double bytes) => 2.0 * (n - 1) / n * bytes;

    /// <summary>DDP broadcast_buffers: rank 0's BN buffers before every forward.</summary>
    public static long DdpBroadcastBytes(int n, ModelState m) => n > 1 ? m.BufferBytes : 0;

    /// <summary>DDP's buckets (bytes) in gradient-ready order, cut as the reducer cuts them (<see cref="BucketPlan"/>).</summary>
    public static IReadOnlyList<long> Buckets(ModelState m, double bucketMb) =>
        BucketPlan.Cut(m.GradientReadyOrder.Select(length => length * sizeof(float)).ToArray(), bucketMb).Select(b => b.Bytes).ToArray();

    /// <summary>Seconds of one ring all-reduce of <paramref name="bytes"/>: 2(N-1) steps, each paying latency, moving 2(N-1)/N of the bytes per rank.</summary>
    public static double RingSeconds(int n, double bytes, Link link)
        => n <= 1 ? 0 : link.Crossings * (2 * (n - 1) * link.LatencyUs * 1e-6 + RingBytesPerRank(n, bytes) / (link.PathGBs * 1e9));

    /// <summary>
    /// DDP's exposed and hidden all-reduce time. Bucket k becomes ready when backward has produced the
    /// gradients up to its end, uniformly in bytes over <paramref name="backwardSeconds"/>; buckets are
    /// all-reduced one after another on one communication stream; what runs past the end of backward is
    /// exposed. Without overlap every bucket starts after backward. On a shaped link (a
    /// <see cref="Link.BurstBytes"/> bucket) the link's burst is full when backward starts, each
    /// all-reduce passes what the bucket holds at once, and the bucket refills at the link's rate while
    /// the link is idle between all-reduces.
    /// </summary>
    public static (double Exposed, double Hidden) DdpSync(IReadOnlyList<long> buckets, double backwardSeconds, int n, Link link, bool overlap)
    {
        double total = buckets.Sum(), ready = 0, end = 0, busy = 0, tokens = link.BurstBytes;
        double rate = link.PathGBs * 1e9;
        foreach (long b in buckets)
        {
            ready += b;
            double readyAt = overlap && total > 0 ? backwardSeconds * ready / total : backwardSeconds;
            double start = Math.Max(end, readyAt);
            tokens = Math.Min(link.BurstBytes, tokens + (start - end) * rate);
            double atOnce = n > 1 ? Math.Min(tokens, RingBytesPerRank(n, b)) : 0;
            tokens -= atOnce;
            double seconds = RingSeconds(n, b, link) - link.Crossings * atOnce / rate;
            end = start + seconds;
            busy += seconds;
        }
        if (!overlap) return (busy, 0);
        double exposed = Math.Max(0, end - backwardSeconds);
        return (exposed, Math.Max(0, busy - exposed));
    }

    /// <summary>Seconds of a ring reduce-scatter or all-gather of <paramref name="bytes"/>: N-1 steps moving (N-1)/N of the bytes per rank, half an all-reduce.</summary>
    public static double HalfRingSeconds(int n, double bytes, Link link)
        => n <= 1 ? 0 : link.Crossings * ((n - 1) * link.LatencyUs * 1e-6 + (n - 1.0) / n * bytes / (link.PathGBs * 1e9));

    /// <summary>
    /// Collectives of <paramref name="pieces"/> (bytes) launched as compute produces them, uniformly in bytes over
    /// <paramref name="computeSeconds"/>, one after another on one stream: (exposed after compute, hidden under it).
    /// </summary>
    public static (double Exposed, double Hidden) Overlapped(IReadOnlyList<long> pieces, double computeSeconds, Func<long, double> seconds, bool overlap)
    {
        double total = pieces.Sum(), ready = 0, end = 0, busy = 0;
        foreach (long b in pieces)
        {
            ready += b;
            double readyAt = overlap && total > 0 ? computeSeconds * ready / total : computeSeconds;
            double t = seconds(b);
            end = Math.Max(end, readyAt) + t;
            busy += t;
        }
        if (!overlap) return (busy, 0);
        double exposed = Math.Max(0, end - computeSeconds);
        return (exposed, Math.Max(0, busy - exposed));
    }

    /// <summary>
    /// One FSDP pass (forward, or backward with <paramref name="reduceScatter"/>) on one communication stream, in the
    /// order the engine issues it: before unit i computes, wait for its all-gather and issue unit i+1's; after it,
    /// issue its reduce-scatter (backward). Compute per unit is uniform in bytes over <paramref name="computeSeconds"/>.
    /// Returns the waits for gathers (exposed all-gather), the wait for the last reduce-scatters after the pass
    /// (exposed reduce-scatter), and the stream's busy time.
    /// </summary>
    public static (double GatherExposed, double ReduceExposed, double Busy) FsdpPass(IReadOnlyList<long> units, double computeSeconds, Func<long, double> gather,
        Func<long, double>? reduceScatter)
    {
        double total = units.Sum(), stream = 0, t = 0, waited = 0, busy = 0;
        double Issue(double ready, double seconds)
        {
            stream = Math.Max(stream, ready) + seconds;
            busy += seconds;
            return stream;
        }
        var gathered = new double[units.Count];
        if (units.Count > 0) gathered[0] = Issue(0, gather(units[0]));
        for (int i = 0; i < units.Count; i++)
        {
            waited += Math.Max(0, gathered[i] - t);
            t = Math.Max(t, gathered[i]);
            if (i + 1 < units.Count) gathered[i + 1] = Issue(t, gather(units[i + 1]));
            t += total > 0 ? computeSeconds * units[i] / total : 0;
            if (reduceScatter is not null) Issue(t, reduceScatter(units[i]));
        }
        double reduceExposed = reduceScatter is null ? 0 : Math.Max(0, stream - t);
        return (waited, reduceExposed, busy);
    }

    /// <param name="network">The link between the multi-process modes' ranks when it is not the devices' link (emulated nodes); DP's copies stay on <paramref name="link"/>.</param>
    public static ScalingPrediction Predict(SingleStep single, ModelState model, ScalingSettings s, Link link, Link? network = null)
    {
        s.Validate();
        link.Validate();
        Link net = network ?? link;
        net.Validate();
        var inv = CultureInfo.InvariantCulture;
        int n = s.Devices, b = s.BatchSize;
        var assumptions = new List<string>(single.Assumptions)
        {
            string.Format(inv, "Model: {0}, {1:N0} parameters ({2} of fp32 gradients), {3:N0} BN buffer floats ({4}).", model.Name, model.ParameterCount, Bytes(model.ParameterBytes), model.BufferCount, Bytes(model.BufferBytes)),
            "Link: " + link.Describe() + ".",
            string.Format(inv, "Epoch = steps x step; single: floor({0:N0} / {1}) = {2} steps; dp and ddp: floor({0:N0} / ({1} x {3})) = {4} steps (batch {1} per device, drop_last).", s.TrainImages, b, s.SingleSteps, n, s.ParallelSteps),
        };
        if (network is not null) assumptions.Add("DDP's ranks talk over their own network, " + net.Describe() + "; DP's copies stay on the link above.");
        if (s.SharedDevice) assumptions.Add("Shared device: all replicas and ranks run on ONE physical device, so their device compute adds up (x N) instead of running in parallel.");
        double shared = s.SharedDevice ? n : 1;

        var singlePhases = PhaseClock.Phases.ToDictionary(p => p, p => new PhaseStat(single[p], p == "h2d" ? single.H2dBytes : 0));
        singlePhases["dispatch"] = new PhaseStat(0, 0);
        var singlePrediction = new ModePrediction("single", 1, s.SingleSteps, singlePhases, 0);

        // DP: one process; everything that moves goes through device 0, one copy after another.
        long inputScatter = DpInputScatterBytes(n, b, s.InputBytesPerImage), outputs = DpOutputBytes(n, b, model.Classes);
        long replicate = DpReplicateBytes(n, model), reduce = DpReduceBytes(n, model);
        double copies = n - 1;
        double reduceAdd = copies * 3 * (double)model.ParameterBytes / (s.MemoryGBs * 1e9);
        double dispatch = s.DpSerialDispatch ? s.KernelsPerStep * s.LaunchUs * 1e-6 * (n - 1) : 0;
        var dp = new Dictionary<string, PhaseStat>
        {
            ["data"] = new(single["data"] * n, 0),
            ["h2d"] = new(single["h2d"] * n, single.H2dBytes * n),
            ["scatter"] = new(copies * (link.DeviceToDevice(inputScatter / Math.Max(1.0, copies)) + link.DeviceToDevice(outputs / Math.Max(1.0, copies))), inputScatter + outputs),
            ["replicate"] = new(copies * link.DeviceToDevice(replicate / Math.Max(1.0, copies)), replicate),
            ["forward"] = new(single["forward"] * shared, 0),
            ["gather"] = new(copies * link.DeviceToDevice(outputs / Math.Max(1.0, copies)), outputs),
            ["loss"] = new(single["loss"] * n, 0),
            ["backward"] = new(single["backward"] * shared, 0),
            ["grad_sync"] = new(copies * link.DeviceToDevice(reduce / Math.Max(1.0, copies)) + reduceAdd, reduce),
            ["optimizer"] = new(single["optimizer"], 0),
            ["dispatch"] = new(dispatch, 0),
            ["reduce_scatter"] = new(0, 0),
            ["all_gather"] = new(0, 0),
        };
        assumptions.Add(string.Format(inv, "DP: one process drives {0} devices. Host data loading and h2d handle the global batch of {1} ({2}x single's), all on device 0; loss runs once on the global batch on device 0 ({2}x single's); the optimizer runs once, on device 0.", n, n * b, n));
        assumptions.Add(string.Format(inv, "DP: scatter ({0}), replicate ({1}), gather ({2}), output-gradient scatter ({2}) and the gradient reduce ({3}) are N-1 = {4} device-to-device copies from or to device 0, one after another, none overlapped with compute; the reduce adds 3 passes over the gradients per copy at device memory bandwidth ({5:F2} ms). Labels (int32) are scattered with the images, as the engine does.",
            Bytes(inputScatter), Bytes(replicate), Bytes(outputs), Bytes(reduce), n - 1, 1000 * reduceAdd));
        assumptions.Add(s.SharedDevice
            ? "DP: forward and backward of the replicas share one device (x N)."
            : string.Format(inv, "DP: forward and backward run in parallel on batch {0} per device, so each takes single's time (the seed's batch is per device).", b));
        assumptions.Add(s.DpSerialDispatch
            ? string.Format(inv, "DP: one host thread launches every replica's kernels (Python's GIL): the extra replicas add kernels-per-step x launch cost x (N-1) = {0} x {1:G3} us x {2} = {3:F2} ms per step, serially. Both numbers are assumed (--kernels-per-step, --launch-us), not measured.", s.KernelsPerStep, s.LaunchUs, n - 1, 1000 * dispatch)
            : "DP: each device has its own host thread (no GIL), so kernel dispatch adds nothing.");

        // DDP: N processes; each rank computes single's step, then only gradients move, in a ring.
        IReadOnlyList<long> buckets = Buckets(model, s.BucketMb);
        double backward = single["backward"] * shared;
        var (exposed, hidden) = DdpSync(buckets, backward, n, net, s.Overlap);
        long broadcast = DdpBroadcastBytes(n, model);
        // The link was idle through the optimizer and data loading: a shaper lets its burst through at once.
        double broadcastSeconds = n <= 1 ? 0 : net.Crossings * ((n - 1) * net.LatencyUs * 1e-6 + Math.Max(0, broadcast - net.BurstBytes) / (net.PathGBs * 1e9));
        long ring = (long)RingBytesPerRank(n, model.ParameterBytes);
        var ddp = new Dictionary<string, PhaseStat>
        {
            ["data"] = new(single["data"], 0),
            ["h2d"] = new(single["h2d"] * shared, single.H2dBytes),
            ["scatter"] = new(0, 0),
            ["replicate"] = new(broadcastSeconds, broadcast),
            ["forward"] = new(single["forward"] * shared, 0),
            ["gather"] = new(0, 0),
            ["loss"] = new(single["loss"] * shared, 0),
            ["backward"] = new(backward, 0),
            ["grad_sync"] = new(exposed, ring),
            ["optimizer"] = new(single["optimizer"] * shared, 0),
            ["dispatch"] = new(0, 0),
            ["reduce_scatter"] = new(0, 0),
            ["all_gather"] = new(0, 0),
        };
        assumptions.Add(string.Format(inv, "DDP: each of {0} ranks is its own process and computes single's step on batch {1} (data, h2d, forward, loss, backward, optimizer unchanged{2}).", n, b, s.SharedDevice ? ", times N on the shared device" : ""));
        assumptions.Add(string.Format(inv, "DDP: broadcast_buffers sends rank 0's {0} of BN buffers before every forward: (N-1) latencies + bytes / bandwidth, pipelined, not overlapped.", Bytes(broadcast)));
        assumptions.Add(string.Format(inv, "DDP: ring all-reduce, 2(N-1) = {0} steps per bucket, each paying the link latency, moving 2(N-1)/N x gradient bytes = {1} per rank at the link's bandwidth{2}; all-reduce kernels do not slow compute.",
            2 * (n - 1), Bytes(ring), net.PeerToPeer ? "" : ", through the host (time doubled)"));
        assumptions.Add(string.Format(inv, "DDP: {0} bucket(s) ({1}), the first capped at {4:G3} MiB, the rest at {2:G3} MiB, filled with whole parameters in reverse forward order; {3}",
            buckets.Count, string.Join(", ", buckets.Select(x => Bytes(x))), s.BucketMb,
            s.Overlap
                ? "a bucket is ready when backward has produced its gradients, uniformly in bytes over backward's time; buckets go one after another on one stream; only what runs past the end of backward is exposed. (ResNet's late layers hold most parameters but little compute, so real readiness is earlier: this is pessimistic.)"
                : "no overlap: every bucket starts after backward.", BucketPlan.FirstCapMb(s.BucketMb)));
        var ddpPrediction = new ModePrediction("ddp", n, s.ParallelSteps, ddp, hidden);
        var dpPrediction = new ModePrediction("dp", n, s.ParallelSteps, dp, 0);
        if (n == 1)
        {
            assumptions.Add("N = 1: nothing moves between devices, so dp and ddp reduce to single.");
        }
        IReadOnlyList<ModePrediction> sharded = PredictSharded(single, model, s, net, ddp, hidden, buckets, assumptions);
        return new ScalingPrediction(singlePrediction, dpPrediction, ddpPrediction, assumptions) { Sharded = sharded };
    }

    /// <summary>
    /// ZeRO-1, ZeRO-2 and FSDP from DDP's step (the same compute on every rank): ZeRO-1 adds a parameter all-gather
    /// after an optimizer that updates 1/N; ZeRO-2 reduce-scatters buckets (half an all-reduce each) under backward;
    /// FSDP all-gathers each unit before its forward and again before its backward, prefetched under the previous
    /// unit's compute, and reduce-scatters each unit's gradients under backward: 1.5x DDP's bytes.
    /// </summary>
    private static IReadOnlyList<ModePrediction> PredictSharded(SingleStep single, ModelState model, ScalingSettings s, Link link,
        IReadOnlyDictionary<string, PhaseStat> ddp, double ddpHidden, IReadOnlyList<long> buckets, List<string> assumptions)
    {
        var inv = CultureInfo.InvariantCulture;
        int n = s.Devices;
        double shared = s.SharedDevice ? n : 1;
        long half = DistributedStrategy.RingShare(n, model.ParameterBytes);
        double optimizer = single["optimizer"] * shared / n;
        double gatherAll = buckets.Sum(b => HalfRingSeconds(n, b, link));
        Dictionary<string, PhaseStat> From(params (string Phase, PhaseStat Stat)[] changes)
        {
            var phases = new Dictionary<string, PhaseStat>(ddp);
            foreach (var (phase, stat) in changes) phases[phase] = stat;
            return phases;
        }

        var zero1 = From(("optimizer", new PhaseStat(optimizer, 0)), ("all_gather", new PhaseStat(gatherAll, half)));
        var (rsExposed, rsHidden) = Overlapped(buckets, ddp["backward"].SecondsPerStep, b => HalfRingSeconds(n, b, link), s.Overlap);
        var zero2 = From(("grad_sync", new PhaseStat(0, 0)), ("reduce_scatter", new PhaseStat(rsExposed, half)),
            ("optimizer", new PhaseStat(optimizer, 0)), ("all_gather", new PhaseStat(gatherAll, half)));
        IReadOnlyList<long> units = model.UnitLengths.Select(u => u * sizeof(float)).ToList();
        double HalfRing(long bytes) => HalfRingSeconds(n, bytes, link);
        var forward = FsdpPass(units, ddp["forward"].SecondsPerStep, HalfRing, null);
        var backward = FsdpPass(units.Reverse().ToList(), ddp["backward"].SecondsPerStep, HalfRing, HalfRing);
        double fsdpExposed = forward.GatherExposed + backward.GatherExposed + backward.ReduceExposed;
        var fsdp = From(("grad_sync", new PhaseStat(0, 0)), ("reduce_scatter", new PhaseStat(backward.ReduceExposed, half)),
            ("optimizer", new PhaseStat(optimizer, 0)), ("all_gather", new PhaseStat(forward.GatherExposed + backward.GatherExposed, 2 * half)));
        assumptions.Add(string.Format(inv, "ZeRO-1: DDP's step and all-reduce; the optimizer updates 1/N of the parameters ({0:F2} ms); then every bucket's parameters are all-gathered, (N-1)/N x {1} = {2} per rank, not overlapped.",
            1000 * optimizer, Bytes(model.ParameterBytes), Bytes(half)));
        assumptions.Add(string.Format(inv, "ZeRO-2: each bucket is reduce-scattered (half an all-reduce: N-1 steps, (N-1)/N of its bytes) as backward fills it, overlapped as DDP's buckets are; then ZeRO-1's all-gather. Bytes per step equal DDP's."));
        assumptions.Add(string.Format(inv, "FSDP: {0} units (stem, each BasicBlock, head); each is all-gathered before its forward and again before its backward ({1} per rank per step), the next unit's gather issued before this unit computes (compute per unit uniform in bytes); each unit's gradients are reduce-scattered after its backward ({2}), on the same stream as the gathers, in the engine's order: 1.5x DDP's bytes.",
            units.Count, Bytes(2 * half), Bytes(half)));
        return new[]
        {
            new ModePrediction("zero1", n, s.ParallelSteps, zero1, ddpHidden),
            new ModePrediction("zero2", n, s.ParallelSteps, zero2, rsHidden),
            new ModePrediction("fsdp", n, s.ParallelSteps, fsdp, Math.Max(0, forward.Busy + backward.Busy - fsdpExposed)),
        };
    }

    /// <summary>Decimal units (1 MB = 10^6 bytes), as bandwidths in GB/s are given.</summary>
    public static string Bytes(double b) => b switch
    {
        0 => "0",
        < 1e6 => string.Format(CultureInfo.InvariantCulture, "{0:F1} KB", b / 1e3),
        _ => string.Format(CultureInfo.InvariantCulture, "{0:F1} MB", b / 1e6),
    };
}
