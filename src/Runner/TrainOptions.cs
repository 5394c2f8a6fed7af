using System.Globalization;
using System.Reflection;
using Engine.Runner.Training;

namespace Engine.Runner;

/// <summary>
/// Declares a property of <see cref="TrainOptions"/> as a command-line option, once: its flag, help text and the
/// checks every value must pass. The CLI's options (<see cref="Commands.TrainOptionBinder"/>), the rank command
/// line (<see cref="TrainOptions.ToArgs"/>) and validation are all made from these declarations.
/// </summary>
[AttributeUsage(AttributeTargets.Property)]
public sealed class CliOptionAttribute(string flag, string description = "") : Attribute
{
    public string Flag { get; } = flag;
    public string Description { get; } = description;

    /// <summary>"a|b|c": the value is lower-cased and must be one of these.</summary>
    public string? Choices { get; init; }

    /// <summary>Numbers: the smallest value allowed (NaN: no bound).</summary>
    public double Min { get; init; } = double.NaN;

    /// <summary>Numbers: must be greater than zero.</summary>
    public bool Positive { get; init; }

    /// <summary>A bool written "--flag true|false" (a value), not a switch.</summary>
    public bool TrueFalse { get; init; }

    /// <summary>Help text for the default where the property's default is null.</summary>
    public string? DefaultText { get; init; }
}

/// <summary>Everything <c>engine train</c> is told, parsed once. Defaults are the seed benchmark's. Each option is declared once, here.</summary>
public sealed record TrainOptions
{
    [CliOption("--mode", "how to train")]
    public TrainingMode Mode { get; init; } = TrainingMode.Single;

    [CliOption("--device", "auto | cpu | cuda | cuda:N")]
    public string Device { get; init; } = "auto";

    [CliOption("--model", Choices = "resnet18|resnet34")]
    public string Model { get; init; } = "resnet34";

    [CliOption("--stem", "imagenet (7x7/2 conv + max-pool, torchvision's) | cifar (3x3/1 conv, no pool)", Choices = "imagenet|cifar")]
    public string Stem { get; init; } = "imagenet";

    [CliOption("--width", "base channels (torchvision: 64)", Min = 1)]
    public int Width { get; init; } = 64;

    [CliOption("--dataset", Choices = "cifar10|fashion-mnist|synthetic")]
    public string Dataset { get; init; } = "synthetic";

    [CliOption("--data", "CIFAR-10 binary folder or .tar.gz; Fashion-MNIST IDX folder; without --dataset the format is detected",
        DefaultText = "./data for cifar10, /usr/share/datasets/fashion-mnist for fashion-mnist, none for synthetic")]
    public string? Data { get; init; }

    [CliOption("--train-limit", "use only the first N training images", Min = 1, DefaultText = "all")]
    public int? TrainLimit { get; init; }

    [CliOption("--test-limit", "use only the first N test images (0: no evaluation)", Min = 0, DefaultText = "all")]
    public int? TestLimit { get; init; }

    [CliOption("--epochs", Min = 1)]
    public int Epochs { get; init; } = 4;

    [CliOption("--batch-size", "per device for dp and the multi-process modes, as in the seed", Min = 1)]
    public int BatchSize { get; init; } = 512;

    [CliOption("--accumulate", "micro-batches per optimizer step (gradient accumulation; DDP synchronises only on the last, as with no_sync)", Min = 1)]
    public int Accumulate { get; init; } = 1;

    [CliOption("--lr", Min = 0)]
    public float Lr { get; init; } = 0.1f;

    [CliOption("--momentum", Min = 0)]
    public float Momentum { get; init; } = 0.9f;

    [CliOption("--weight-decay", Min = 0)]
    public float WeightDecay { get; init; } = 5e-4f;

    [CliOption("--augment", "standard (random crop 4 px + flip) | none", Choices = "standard|none")]
    public string Augment { get; init; } = "standard";

    [CliOption("--shuffle", "shuffle every epoch: true | false", TrueFalse = true)]
    public bool Shuffle { get; init; } = true;

    [CliOption("--seed")]
    public int Seed { get; init; }

    [CliOption("--init", "initial weights: a safetensors state_dict (torchvision names)")]
    public string? Init { get; init; }

    [CliOption("--save", "write the model (safetensors, torchvision names) after every epoch, training state beside it")]
    public string? Save { get; init; }

    [CliOption("--resume", "continue a run from a --save file and its training-state file")]
    public string? Resume { get; init; }

    [CliOption("--output", "write the run's results as JSON")]
    public string? Output { get; init; }

    /// <summary>DP replicas (comma-separated device specs); filled in by <see cref="ResolveDevices"/> when not given.</summary>
    [CliOption("--devices", "dp: comma-separated replicas (cuda:0,cuda:1 | cpu,cpu | cuda:0,cuda:0)", DefaultText = "every GPU, or two CPU replicas")]
    public string? Devices { get; init; }

    [CliOption("--dp-serial-dispatch", "dp: drive every device from one host thread, as Python's GIL effectively forces")]
    public bool DpSerialDispatch { get; init; }

    [CliOption("--backend", "multi-process modes: nccl | host | auto", Choices = "auto|host|nccl")]
    public string Backend { get; init; } = "auto";

    [CliOption("--bucket-mb", "ddp, zero1, zero2: gradient bucket cap in MiB (the first bucket is 1 MiB)", Positive = true)]
    public double BucketMb { get; init; } = 25;

    [CliOption("--comm-hook", "ddp, zero1: how gradient buckets travel: none (float32) | fp16 | bf16 (PyTorch's fp16_compress_hook / bf16_compress_hook: half the bytes)", Choices = "none|fp16|bf16")]
    public string CommHook { get; init; } = "none";

    [CliOption("--no-overlap", "ddp, zero1: start the gradient all-reduces only after backward")]
    public bool NoOverlap { get; init; }

    [CliOption("--timeout", "multi-process modes: bound in seconds on every collective wait", Min = 1)]
    public int Timeout { get; init; } = 300;

    /// <summary>Multi-process modes: after every step, check that every rank holds bit-identical parameters (costs a download and an all-gather).</summary>
    [CliOption("--verify-replicas", "multi-process modes: check after every step that all ranks hold bit-identical parameters")]
    public bool VerifyReplicas { get; init; }

    /// <summary>Chrome-trace JSON of every step's phases, per-device work and collectives.</summary>
    [CliOption("--trace", "write a Chrome-trace JSON (Perfetto, chrome://tracing): phases per device, per-replica work, collectives")]
    public string? Trace { get; init; }

    /// <summary>"kernels": time every kernel launch and print a per-kernel table (calls, total, mean, share, GFLOP/s or GB/s).</summary>
    [CliOption("--profile", "kernels: time every kernel launch and print a per-kernel table (like torch.profiler's key_averages)", Choices = "kernels")]
    public string? Profile { get; init; }

    /// <summary>"train" (batch statistics, PyTorch's default) or "eval" (BN layers in eval mode while training: running statistics, frozen).</summary>
    [CliOption("--bn-mode", "train (batch statistics) | eval (BN frozen in eval mode while training)", Choices = "train|eval")]
    public string BnMode { get; init; } = "train";

    /// <summary>Every declared option, with its property, in declaration order.</summary>
    public static readonly IReadOnlyList<(PropertyInfo Property, CliOptionAttribute Cli)> Declared = typeof(TrainOptions).GetProperties()
        .Select(p => (p, p.GetCustomAttribute<CliOptionAttribute>()!)).Where(x => x.Item2 is not null).OrderBy(x => x.p.MetadataToken).ToList();

    /// <summary>--comm-hook as the strategies take it.</summary>
    public Engine.Nn.Parallel.GradientCompression Compression => CommHook switch
    {
        "fp16" => Engine.Nn.Parallel.GradientCompression.Fp16,
        "bf16" => Engine.Nn.Parallel.GradientCompression.Bf16,
        _ => Engine.Nn.Parallel.GradientCompression.None,
    };

    public string[] DeviceList() => (Devices ?? Device).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>
    /// For dp without --devices: every GPU (two replicas sharing it when there is exactly one), or two
    /// CPU replicas when there is no GPU or --device cpu was given.
    /// </summary>
    public TrainOptions ResolveDevices()
    {
        if (Mode != TrainingMode.Dp || Devices is not null) return this;
        if (Device.StartsWith("cuda:", StringComparison.Ordinal)) return this with { Devices = $"{Device},{Device}" };
        int gpus = 0;
        if (Device is "auto" or "cuda")
        {
            using var context = Engine.Kernels.Device.CreateContext();
            gpus = Engine.Kernels.Device.CudaCount(context);
        }
        string[] list = gpus switch
        {
            0 => new[] { "cpu", "cpu" },
            1 => new[] { "cuda:0", "cuda:0" },
            _ => Enumerable.Range(0, gpus).Select(i => $"cuda:{i}").ToArray(),
        };
        return this with { Devices = string.Join(',', list) };
    }

    /// <summary>The command line that reproduces these options (<c>train ...</c>), for launching ranks: every option that differs from train's default.</summary>
    public List<string> ToArgs()
    {
        var defaults = new TrainOptions();
        var a = new List<string> { "train" };
        foreach (var (p, cli) in Declared)
        {
            object? value = p.GetValue(this);
            if (Equals(value, p.GetValue(defaults)) && p.Name != nameof(Mode)) continue;
            switch (value)
            {
                case null: continue;
                case bool b when !cli.TrueFalse:
                    if (b) a.Add(cli.Flag);
                    continue;
                default:
                    a.Add(cli.Flag);
                    a.Add(Format(value));
                    continue;
            }
        }
        return a;
    }

    /// <summary>How a value is written on a command line (invariant, round-trip for floating point).</summary>
    public static string Format(object value) => value switch
    {
        bool b => b ? "true" : "false",
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>Checks what can be checked before any work starts; the message names the option.</summary>
    public void Validate()
    {
        foreach (var (p, cli) in Declared) CheckDeclared(cli, p.GetValue(this));
        foreach (string spec in DeviceList())
        {
            if (!System.Text.RegularExpressions.Regex.IsMatch(spec, "^(auto|cpu|cuda|cuda:[0-9]+)$"))
            {
                throw new ArgumentException($"Unknown device '{spec}': expected auto, cpu, cuda or cuda:N.");
            }
        }
        if (Mode == TrainingMode.Dp && DeviceList().Length < 1) throw new ArgumentException("--devices lists no device.");
        if (Accumulate > 1 && !(Mode == TrainingMode.Single || Mode == TrainingMode.Ddp || Mode == TrainingMode.Zero1))
        {
            throw new ArgumentException($"--accumulate {Accumulate}: gradient accumulation runs in single, ddp and zero1 (zero2 and fsdp keep no full gradient to accumulate into; dp reduces every backward), not in {Mode}.");
        }
        if (NoOverlap && (Mode == TrainingMode.Zero2 || Mode == TrainingMode.Fsdp))
        {
            throw new ArgumentException($"--no-overlap: {Mode} reduce-scatters gradients as backward produces them and keeps no full gradient buffer; --no-overlap applies to ddp and zero1.");
        }
        if (CommHook != "none" && !(Mode == TrainingMode.Ddp || Mode == TrainingMode.Zero1))
        {
            throw new ArgumentException($"--comm-hook {CommHook}: compression hooks apply to the all-reduced buckets of ddp and zero1, not to {Mode}.");
        }
        if (Init is not null && Resume is not null) throw new ArgumentException("--init and --resume cannot be used together: --resume restores the model itself.");
        if (Init is not null && !File.Exists(Init)) throw new ArgumentException($"--init {Init}: no such file.");
        if (Resume is not null && !Engine.Nn.Checkpoints.ModelCheckpoint.Exists(Resume)) throw new ArgumentException($"--resume {Resume}: no such file.");
        if (Resume is not null && !File.Exists(Engine.Nn.Checkpoints.ModelCheckpoint.StatePath(Resume)))
        {
            throw new ArgumentException($"--resume {Resume}: its training-state file {Engine.Nn.Checkpoints.ModelCheckpoint.StatePath(Resume)} is missing (--save writes it beside the model).");
        }
        CheckOutputs();
    }

    /// <summary>The checks a declaration states (choices, bounds, finiteness), for one value.</summary>
    private static void CheckDeclared(CliOptionAttribute cli, object? value)
    {
        switch (value)
        {
            case string s when cli.Choices is not null:
                string[] choices = cli.Choices.Split('|');
                if (!choices.Contains(s)) throw new ArgumentException($"{cli.Flag} must be {string.Join(", ", choices[..^1])}{(choices.Length > 1 ? " or " : "")}{choices[^1]}, got '{s}'.");
                break;
            case int or float or double:
                double d = Convert.ToDouble(value, CultureInfo.InvariantCulture);
                string shown = Format(value);
                if (!double.IsFinite(d)) throw new ArgumentException($"{cli.Flag} must be a finite number, got {shown}.");
                if (cli.Positive && !(d > 0)) throw new ArgumentException($"{cli.Flag} must be positive, got {shown}.");
                if (!double.IsNaN(cli.Min) && d < cli.Min)
                {
                    string bound = cli.Min == 0 ? "non-negative" : $"at least {Format(cli.Min is var m && value is int ? (object)(int)m : m)}";
                    throw new ArgumentException($"{cli.Flag} must be {bound}, got {shown}.");
                }
                break;
        }
    }

    /// <summary>Every file the run writes can be written: checked now, not after training.</summary>
    public void CheckOutputs()
    {
        if (Save is not null)
        {
            OutputPaths.CheckFile("--save", Save);
            OutputPaths.CheckFile("--save", Engine.Nn.Checkpoints.ModelCheckpoint.StatePath(Save));
        }
        if (Output is not null) OutputPaths.CheckFile("--output", Output);
        if (Trace is not null) OutputPaths.CheckFile("--trace", Trace);
    }
}
