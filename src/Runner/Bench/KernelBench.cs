using System.Globalization;
using System.Text;
using System.Text.Json;
using Engine.Kernels;
using Engine.Kernels.Cases;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Bench;

/// <summary>How the kernel bench runs.</summary>
/// <param name="Runs">Timed runs per variant; the median is reported.</param>
/// <param name="Warmup">Untimed runs before them (kernel compilation, caches, clocks).</param>
/// <param name="Validate">Check each variant against the float64 reference before timing it.</param>
/// <param name="CpuCheckWork">
/// On the CPU accelerator a shape is checked as it is only when its reference costs at most this many
/// multiply-adds (GEMM-shaped) or elements (the rest); larger ones are checked at a smaller batch of the
/// same layer. A GPU always checks the real shape.
/// </param>
/// <param name="Lookahead">Jobs prepared ahead of the one being timed (null: several on a GPU, none on the CPU accelerator).</param>
/// <param name="Ops">Only the ops whose names start with one of these (null: every op), for a device too slow for the whole step (a simulated GPU).</param>
public sealed record BenchSettings(int Runs = 30, int Warmup = 5, bool Validate = true, int Seed = 1, long CpuCheckWork = 20_000_000, int? Lookahead = null,
    IReadOnlyList<string>? Ops = null)
{
    public bool Includes(string op) => Ops is null || Ops.Any(prefix => op.StartsWith(prefix, StringComparison.Ordinal));
}

/// <summary>One variant of one op at one shape: its check and its median time, judged against the device's ceilings.</summary>
public sealed record BenchRow(
    string Op, string Shape, int PerStep, string Variant, int Version, bool Gemm, long Flops, long Bytes,
    double MedianMs, double MinMs, string? CheckedAt, double? Error, bool Fastest, string? Failure = null)
{
    /// <summary>Null when not validated (--validate false).</summary>
    public bool? Passed => Error is double e ? e <= 1 && double.IsFinite(e) : null;

    /// <summary>Achieved rate: TFLOP/s for GEMM-shaped ops, GB/s for the rest.</summary>
    public double Rate => MedianMs <= 0 ? 0 : Gemm ? Flops / (MedianMs * 1e-3) / 1e12 : Bytes / (MedianMs * 1e-3) / 1e9;

    public string RateUnit => Gemm ? "TFLOP/s" : "GB/s";

    /// <summary>Share of the ceiling measured in the same run: the FMA rate for GEMM-shaped ops, the copy bandwidth for the rest.</summary>
    public double PercentOf(DeviceCeilings c) => Gemm ? 100 * Rate * 1e3 / c.FmaGflops : 100 * Rate / c.CopyGBps;
}

/// <param name="Skipped">Variants not run on this device (a CUDA-only kernel on the CPU accelerator), one line each.</param>
/// <param name="SimulatedClockHz">
/// On a simulated GPU, its core clock: its events count simulated cycles and report them as time at this clock, so
/// a row's cycles are its median time times the clock (<see cref="Cycles"/>). Null on real devices.
/// </param>
public sealed record BenchReport(string Date, string Command, string Device, string Machine, ModelShapes Shapes, BenchSettings Settings,
    DeviceCeilings Ceilings, IReadOnlyList<BenchRow> Rows, IReadOnlyList<string>? Skipped = null, double? SimulatedClockHz = null)
{
    /// <summary>Simulated cycles of <paramref name="ms"/> on a simulated GPU (null elsewhere).</summary>
    public double? Cycles(double ms) => SimulatedClockHz is double hz ? Math.Round(ms * 1e-3 * hz) : null;

    /// <summary>The fastest correct variant of every (op, shape), in step order.</summary>
    public IEnumerable<BenchRow> Fastest => Rows.Where(r => r.Fastest);

    /// <summary>Sum over the step's ops of (fastest median x launches per step): the kernels' share of one step.</summary>
    public double StepMs => Fastest.Sum(r => r.MedianMs * r.PerStep);
}

/// <summary>
/// <c>engine bench kernels</c>: every op of a ResNet training step at the model's real layer shapes,
/// each variant of its kernel (<see cref="KernelVariants"/>) validated against the float64
/// reference, then timed as the median of many runs over rotating operand sets, reported as time,
/// achieved TFLOP/s or GB/s, and the share of the device's ceilings measured in the same run.
/// </summary>
public sealed class KernelBench(Device dev, BenchSettings settings, TextWriter progress)
{
    private readonly Random _rng = new(settings.Seed);
    private readonly List<BenchRow> _rows = new();
    private readonly List<string> _skipped = new();
    private readonly List<IJob> _jobs = new();

    private Device Dev => dev;
    private BenchSettings Settings => settings;
    private TextWriter Progress => progress;

    public static BenchReport Run(Device dev, ModelShapes shapes, KernelVariants variants, BenchSettings settings, string command, TextWriter progress)
    {
        progress.WriteLine($"measuring ceilings on {dev} ...");
        DeviceCeilings ceilings = DeviceCeilings.Measure(dev, Math.Max(3, Math.Min(settings.Runs, 10)));
        var bench = new KernelBench(dev, settings, progress);
        bench.Queue(shapes, variants);
        bench.RunJobs();
        var rows = MarkFastest(bench._rows);
        // ILGPU gives the clock in MHz (the driver's kHz attribute over 1000).
        double? clock = dev.IsSimulated && dev.Accelerator is ILGPU.Runtime.Cuda.CudaAccelerator cuda ? cuda.ClockRate * 1e6 : null;
        return new BenchReport(DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture), command, dev.ToString(),
            Machine(), shapes, settings, ceilings, rows, bench._skipped, clock);
    }

    private void Queue(ModelShapes m, KernelVariants v)
    {
        int n = m.Batch;
        Measure((b, s) => new AugmentCase(dev, _rng, m.Augment with { N = b }, s), n, v.Augment);
        foreach (ConvUse u in m.Convs)
        {
            Conv2dShape c = u.Shape;
            Measure((b, s) => new ConvCase(dev, _rng, c with { N = b }, ConvPass.Forward, s), n, v.ConvForward, u.PerStep);
            if (u.BackwardDataPerStep > 0)
            {
                Measure((b, s) => new ConvCase(dev, _rng, c with { N = b }, ConvPass.BackwardData, s), n, v.ConvBackwardData, u.BackwardDataPerStep);
            }
            Measure((b, s) => new ConvCase(dev, _rng, c with { N = b }, ConvPass.BackwardWeight, s), n, v.ConvBackwardWeight, u.PerStep);
        }
        foreach (var (bn, count) in m.BatchNorms)
        {
            Measure((b, s) => new BatchNormForwardCase(dev, _rng, bn with { N = b }, s), n, v.BatchNormForward, count);
            Measure((b, s) => new BatchNormBackwardCase(dev, _rng, bn with { N = b }, s), n, v.BatchNormBackward, count);
        }
        foreach (var (bn, count) in m.BatchNormRelus)
        {
            Measure((b, s) => new BatchNormForwardCase(dev, _rng, bn with { N = b }, s, relu: true), n, v.BatchNormReluForward, count);
            Measure((b, s) => new BatchNormReluBackwardCase(dev, _rng, bn with { N = b }, s), n, v.BatchNormReluBackward, count);
        }
        foreach (var (bn, count) in m.BatchNormAddRelus)
        {
            Measure((b, s) => new BatchNormAddReluForwardCase(dev, _rng, bn with { N = b }, s), n, v.BatchNormAddReluForward, count);
            Measure((b, s) => new BatchNormAddReluBackwardCase(dev, _rng, bn with { N = b }, s), n, v.BatchNormAddReluBackward, count);
        }
        foreach (var (len, count) in m.Relus)
        {
            long per = len / n;
            Measure((b, s) => UnaryCase.ReluForward(dev, _rng, b * per, s), n, v.ReluForward, count);
            Measure((b, s) => BinaryCase.ReluBackward(dev, _rng, b * per, s), n, v.ReluBackward, count);
        }
        foreach (var (len, count) in m.Adds)
        {
            long per = len / n;
            Measure((b, s) => BinaryCase.Add(dev, _rng, b * per, s), n, v.Add, count);
        }
        if (m.MaxPool is Pool2dShape p)
        {
            Measure((b, s) => new MaxPoolForwardCase(dev, _rng, p with { N = b }, s), n, v.MaxPoolForward);
            Measure((b, s) => new MaxPoolBackwardCase(dev, _rng, p with { N = b }, s), n, v.MaxPoolBackward);
        }
        int c1 = m.AvgPool.NC / n, hw = m.AvgPool.HW;
        Measure((b, s) => new AvgPoolCase(dev, _rng, b * c1, hw, forward: true, s), n, v.AvgPoolForward);
        Measure((b, s) => new AvgPoolCase(dev, _rng, b * c1, hw, forward: false, s), n, v.AvgPoolBackward);
        Measure((b, s) => new LinearForwardCase(dev, _rng, m.Linear with { N = b }, s), n, v.LinearForward);
        Measure((b, s) => new LinearBackwardCase(dev, _rng, m.Linear with { N = b }, s), n, v.LinearBackward);
        Measure((b, s) => new LossForwardCase(dev, _rng, b, m.Linear.OutF, s), n, v.LossForward);
        Measure((b, s) => new LossBackwardCase(dev, _rng, b, m.Linear.OutF, s), n, v.LossBackward);
        Measure((_, s) => new SgdCase(dev, _rng, m.Parameters, s), n, v.Sgd);
    }

    /// <summary>
    /// Queues every variant of one op at one shape. <paramref name="make"/> builds the op's case at a
    /// batch size with a number of operand sets; a smaller batch serves for the check when the real
    /// one is too slow for the reference on the CPU accelerator.
    /// </summary>
    private void Measure<TL>(Func<int, int, OpCase<TL>> make, int batch, IReadOnlyList<Variant<TL>> variants, int perStep = 1) where TL : Delegate
    {
        if (variants.Count > 0) _jobs.Add(new Job<TL>(this, make, batch, variants, perStep));
    }

    /// <summary>
    /// Runs the queued jobs in order. On a GPU the next few jobs are prepared ahead (operands uploaded,
    /// float64 references started on worker threads), so the references of real-size layers, which
    /// take seconds each, overlap each other and the timing. On the CPU accelerator, whose kernels run
    /// on the same cores, they run one at a time so that no reference competes with a timed run.
    /// </summary>
    private void RunJobs()
    {
        int ahead = settings.Lookahead ?? (dev.IsCpu ? 0 : Math.Clamp(Environment.ProcessorCount / 2, 1, 8));
        try
        {
            for (int i = 0; i < _jobs.Count; i++)
            {
                for (int j = i; j <= Math.Min(i + ahead, _jobs.Count - 1); j++) _jobs[j].Prepare();
                _jobs[i].Run();
                _jobs[i].Dispose();
            }
        }
        finally
        {
            foreach (IJob job in _jobs) job.Dispose();
            _jobs.Clear();
        }
    }

    private interface IJob : IDisposable
    {
        void Prepare();
        void Run();
    }

    /// <summary>Validates then times every variant of one op at one shape.</summary>
    private sealed class Job<TL>(KernelBench b, Func<int, int, OpCase<TL>> make, int batch, IReadOnlyList<Variant<TL>> variants, int perStep) : IJob
        where TL : Delegate
    {
        private OpCase<TL>? _timed, _check;
        private string? _checkedAt;

        public void Prepare()
        {
            if (_timed is not null) return;
            _timed = make(batch, 2);
            int sets = b.Sets(_timed.Cost.Bytes);
            if (sets != _timed.Sets)
            {
                _timed.Dispose();
                _timed = make(batch, sets);
            }
            if (b.Settings.Validate)
            {
                int checkBatch = b.CheckBatch(_timed, batch);
                _check = checkBatch == batch ? _timed : make(checkBatch, 1);
                _check.StartReference();
                _checkedAt = checkBatch == batch ? "real shape" : _check.Shape;
            }
        }

        public void Run()
        {
            Prepare();
            OpCase<TL> timed = _timed!;
            if (!b.Settings.Includes(timed.Op)) return;
            foreach (Variant<TL> variant in variants)
            {
                if (variant.CannotRunOn?.Invoke(b.Dev) is { } cannot)
                {
                    b.Progress.WriteLine($"  {timed.Op,-20} {variant.Label,-40} {timed.Shape}  skipped: {cannot}");
                    string line = $"{timed.Op} {variant.Label}: skipped, {cannot}";
                    if (!b._skipped.Contains(line)) b._skipped.Add(line);
                    continue;
                }
                b.Progress.WriteLine($"  {timed.Op,-20} {variant.Label,-40} {timed.Shape}");
                try
                {
                    double? error = _check?.Check(variant.Launch, variant.Precision);
                    double[] ms = Timing.Runs(b.Dev, i => timed.Launch(variant.Launch, i % timed.Sets), b.Settings.Warmup, b.Settings.Runs);
                    b._rows.Add(new BenchRow(timed.Op, timed.Shape, perStep, variant.Name, variant.Version, timed.Gemm, timed.Cost.Flops, timed.Cost.Bytes,
                        Timing.Median(ms), ms.Min(), _checkedAt, error, Fastest: false));
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // A kernel the driver refuses (a first run of new PTX) fails its row, not the whole bench.
                    string why = $"{e.GetType().Name}: {e.Message.Split('\n')[0]}";
                    b.Progress.WriteLine($"  {timed.Op,-20} {variant.Label,-40} {timed.Shape}  threw {why}");
                    b._rows.Add(new BenchRow(timed.Op, timed.Shape, perStep, variant.Name, variant.Version, timed.Gemm, timed.Cost.Flops, timed.Cost.Bytes,
                        0, 0, _checkedAt, double.PositiveInfinity, Fastest: false, Failure: why));
                }
            }
        }

        public void Dispose()
        {
            if (_check is not null && !ReferenceEquals(_check, _timed)) _check.Dispose();
            _timed?.Dispose();
            _check = _timed = null;
        }
    }

    /// <summary>
    /// Operand sets to rotate through: enough that one pass over them spans about 3 L2 caches of a
    /// large GPU (50 MB) so no run finds its inputs cached by the run before, at most 8. The CPU
    /// accelerator's time is dominated by the emulation, not by caches: 2 sets there.
    /// </summary>
    private int Sets(long bytesPerSet)
    {
        if (dev.IsCpu) return 2;
        const long span = 150L << 20;
        return (int)Math.Clamp((span + bytesPerSet - 1) / Math.Max(1, bytesPerSet), 2, 8);
    }

    /// <summary>The batch to check a case at: the real one on a GPU or when the reference is cheap, else the largest that is cheap.</summary>
    private int CheckBatch<TL>(OpCase<TL> c, int batch) where TL : Delegate
    {
        if (!dev.IsCpu) return batch;
        long work = c.Gemm ? c.Cost.Flops / 2 : c.Cost.Bytes / sizeof(float);
        if (work <= settings.CpuCheckWork) return batch;
        return (int)Math.Clamp(settings.CpuCheckWork * batch / work, 1, batch);
    }

    private static List<BenchRow> MarkFastest(List<BenchRow> rows)
    {
        var result = new List<BenchRow>(rows);
        foreach (var group in rows.Select((r, i) => (r, i)).GroupBy(x => (x.r.Op, x.r.Shape)))
        {
            var eligible = group.Where(x => x.r.Passed != false).OrderBy(x => x.r.MedianMs).ToList();
            if (eligible.Count > 0) result[eligible[0].i] = eligible[0].r with { Fastest = true };
        }
        return result;
    }

    public static string Machine()
    {
        string cpu = "unknown CPU";
        try
        {
            cpu = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? cpu;
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return $"{Environment.MachineName}, {Environment.ProcessorCount} logical CPUs ({cpu})";
    }

    /// <summary>The human table: one row per variant, grouped by op and shape, the fastest correct one marked with *.</summary>
    public static string Table(BenchReport r)
    {
        var inv = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        DeviceCeilings c = r.Ceilings;
        sb.AppendLine($"# engine bench kernels, {r.Date}");
        sb.AppendLine($"# command: {r.Command}");
        sb.AppendLine($"# device: {r.Device}; machine: {r.Machine}");
        sb.AppendLine($"# model: {r.Shapes.Describe}");
        sb.AppendLine(string.Format(inv, "# runs {0} after {1} warm-up, median; validate {2}", r.Settings.Runs, r.Settings.Warmup, r.Settings.Validate)
            + (r.Settings.Ops is { } ops ? $"; only the ops starting {string.Join(", ", ops)}" : ""));
        sb.AppendLine(c.Measured
            ? string.Format(inv, "# ceilings: copy {0:F1} GB/s ({1} MiB device-to-device, read + write), fp32 FMA {2:F1} GFLOP/s (bench_fma)",
                c.CopyGBps, c.CopyBytes / 2 >> 20, c.FmaGflops)
            : "# ceilings: not measured (a simulated GPU: too slow to simulate at the sizes that measure them)");
        if (r.SimulatedClockHz is double hz)
        {
            sb.AppendLine(string.Format(inv, "# simulated GPU: times are its model's cycles at its {0:F0} MHz core clock; a model's opinion, not a card's time", hz / 1e6));
        }
        string cyclesHeader = r.SimulatedClockHz is null ? "" : string.Format(inv, " {0,12}", "sim cycles");
        sb.AppendLine(string.Format(inv, "{0,-20} {1,-50} {2,6}  {3,-42} {4,10}{8} {5,16} {6,7}  {7}", "op", "shape", "x/step", "variant", "median ms", "achieved", "% ceil", "check", cyclesHeader));
        foreach (BenchRow row in r.Rows)
        {
            // GEMM rates below 0.1 TFLOP/s (the CPU accelerator, tiny layers) read better in GFLOP/s.
            string rate = !row.Gemm ? string.Format(inv, "{0:F2} GB/s", row.Rate)
                : row.Rate >= 0.1 ? string.Format(inv, "{0:F2} TFLOP/s", row.Rate) : string.Format(inv, "{0:F3} GFLOP/s", row.Rate * 1e3);
            string check = row.Passed switch
            {
                null => "not validated",
                true => string.Format(inv, "ok {0:F2}", row.Error) + (row.CheckedAt == "real shape" ? "" : $" at {row.CheckedAt}"),
                false when row.Failure is not null => "FAIL threw " + row.Failure,
                false => string.Format(inv, "FAIL {0:G3}", row.Error) + (row.CheckedAt == "real shape" ? "" : $" at {row.CheckedAt}"),
            };
            string percent = c.Measured ? string.Format(inv, "{0,6:F1}%", row.PercentOf(c)) : string.Format(inv, "{0,7}", "-");
            string cycles = r.Cycles(row.MedianMs) is double n ? string.Format(inv, " {0,12:F0}", n) : "";
            sb.AppendLine(string.Format(inv, "{0,-20} {1,-50} {2,6}  {3,-42} {4,10:F4}{8} {5,16} {6}  {7}",
                row.Op, row.Shape, row.PerStep, (row.Fastest ? "* " : "  ") + $"v{row.Version} {row.Variant}", row.MedianMs, rate, percent, check, cycles));
        }
        sb.AppendLine("* fastest correct variant of its op and shape; x/step: launches per training step; % ceil: of the FMA rate (FLOP/s rows) or the copy bandwidth (GB/s rows).");
        sb.AppendLine();
        double step = r.StepMs;
        sb.AppendLine(string.Format(inv, "kernel time of one training step (fastest variants x launches per step{1}): {0:F3} ms", step,
                r.Settings.Ops is null ? "" : ", the selected ops only")
            + (r.Cycles(step) is double stepCycles ? string.Format(inv, " ({0:F0} simulated cycles)", stepCycles) : ""));
        foreach (var g in r.Fastest.GroupBy(x => x.Op).Select(g => (Op: g.Key, Ms: g.Sum(x => x.MedianMs * x.PerStep))).OrderByDescending(g => g.Ms))
        {
            sb.AppendLine(string.Format(inv, "  {0,-20} {1,10:F3} ms {2,6:F1}%", g.Op, g.Ms, step > 0 ? 100 * g.Ms / step : 0));
        }
        int failed = r.Rows.Count(x => x.Passed == false);
        if (failed > 0) sb.AppendLine($"{failed} variant(s) FAILED validation (never marked fastest).");
        foreach (string skipped in r.Skipped ?? []) sb.AppendLine(skipped);
        return sb.ToString();
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        // A failed check's error is Infinity (a NaN or infinite output); JSON has no literal for it.
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The report as JSON (times in ms, rates in TFLOP/s or GB/s as the row's unit says).</summary>
    public static string Json(BenchReport r)
    {
        var s = r.Shapes;
        var doc = new
        {
            r.Date,
            r.Command,
            r.Device,
            r.Machine,
            Model = new { s.Config.ModelName, s.Config.Stem, s.Config.Width, s.Batch, s.Parameters },
            Settings = new { r.Settings.Runs, r.Settings.Warmup, r.Settings.Validate, r.Settings.Seed, r.Settings.Ops },
            Ceilings = new
            {
                r.Ceilings.CopyBytes, r.Ceilings.CopyMs, CopyGbPerSecond = r.Ceilings.CopyGBps, r.Ceilings.FmaFlops, r.Ceilings.FmaMs, FmaGflopPerSecond = r.Ceilings.FmaGflops,
            },
            StepMs = r.StepMs,
            r.SimulatedClockHz,
            StepSimulatedCycles = r.Cycles(r.StepMs),
            Skipped = r.Skipped ?? [],
            Rows = r.Rows.Select(x => new
            {
                x.Op, x.Shape, x.PerStep, x.Variant, x.Version, x.Gemm, x.Flops, x.Bytes, x.MedianMs, x.MinMs,
                x.Rate, x.RateUnit, PercentOfCeiling = x.PercentOf(r.Ceilings), x.CheckedAt, x.Error, x.Passed, x.Fastest, x.Failure,
                SimulatedCycles = r.Cycles(x.MedianMs),
            }),
        };
        return JsonSerializer.Serialize(doc, JsonOptions);
    }
}
