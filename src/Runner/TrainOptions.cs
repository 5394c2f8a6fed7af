namespace Engine.Runner;

/// <summary>Everything <c>engine train</c> is told, parsed once. Defaults are the seed benchmark's.</summary>
public sealed record TrainOptions
{
    public string Mode { get; init; } = "single";
    public string Device { get; init; } = "auto";
    public string Model { get; init; } = "resnet34";
    public string Stem { get; init; } = "imagenet";
    public int Width { get; init; } = 64;
    public string Dataset { get; init; } = "synthetic";
    public string? Data { get; init; }
    public int? TrainLimit { get; init; }
    public int? TestLimit { get; init; }
    public int Epochs { get; init; } = 4;
    public int BatchSize { get; init; } = 512;
    public float Lr { get; init; } = 0.1f;
    public float Momentum { get; init; } = 0.9f;
    public float WeightDecay { get; init; } = 5e-4f;
    public string Augment { get; init; } = "standard";
    public bool Shuffle { get; init; } = true;
    public int Seed { get; init; }
    public string? Init { get; init; }
    public string? Save { get; init; }
    public string? Resume { get; init; }
    public string? Output { get; init; }

    /// <summary>DP replicas (comma-separated device specs); filled in by <see cref="ResolveDevices"/> when not given.</summary>
    public string? Devices { get; init; }
    public bool DpSerialDispatch { get; init; }
    public string Backend { get; init; } = "auto";
    public double BucketMb { get; init; } = 25;
    public bool NoOverlap { get; init; }
    public int Timeout { get; init; } = 300;

    /// <summary>DDP: after every step, check that every rank holds bit-identical parameters (costs a download and an all-gather).</summary>
    public bool VerifyReplicas { get; init; }

    /// <summary>Chrome-trace JSON of every step's phases, per-device work and all-reduce buckets.</summary>
    public string? Trace { get; init; }

    /// <summary>"kernels": time every kernel launch and print a per-kernel table (calls, total, mean, share, GFLOP/s or GB/s).</summary>
    public string? Profile { get; init; }

    /// <summary>"train" (batch statistics, PyTorch's default) or "eval" (BN layers in eval mode while training: running statistics, frozen).</summary>
    public string BnMode { get; init; } = "train";

    public string[] DeviceList() => (Devices ?? Device).Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>
    /// For dp without --devices: every GPU (two replicas sharing it when there is exactly one), or two
    /// CPU replicas when there is no GPU or --device cpu was given.
    /// </summary>
    public TrainOptions ResolveDevices()
    {
        if (Mode != "dp" || Devices is not null) return this;
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

    /// <summary>The command line that reproduces these options (<c>train ...</c>), for launching DDP ranks.</summary>
    public List<string> ToArgs()
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        var a = new List<string>
        {
            "train", "--mode", Mode, "--device", Device, "--model", Model, "--stem", Stem, "--width", Width.ToString(inv),
            "--dataset", Dataset, "--epochs", Epochs.ToString(inv), "--batch-size", BatchSize.ToString(inv),
            "--lr", Lr.ToString("R", inv), "--momentum", Momentum.ToString("R", inv), "--weight-decay", WeightDecay.ToString("R", inv),
            "--augment", Augment, "--shuffle", Shuffle ? "true" : "false", "--seed", Seed.ToString(inv),
            "--backend", Backend, "--bucket-mb", BucketMb.ToString("R", inv), "--timeout", Timeout.ToString(inv),
        };
        void Opt(string name, string? value)
        {
            if (value is not null) a.AddRange(new[] { name, value });
        }
        Opt("--data", Data);
        Opt("--train-limit", TrainLimit?.ToString(inv));
        Opt("--test-limit", TestLimit?.ToString(inv));
        Opt("--init", Init);
        Opt("--save", Save);
        Opt("--resume", Resume);
        Opt("--output", Output);
        Opt("--trace", Trace);
        Opt("--profile", Profile);
        if (BnMode != "train") Opt("--bn-mode", BnMode);
        if (Mode == "dp") Opt("--devices", Devices);
        if (DpSerialDispatch) a.Add("--dp-serial-dispatch");
        if (NoOverlap) a.Add("--no-overlap");
        if (VerifyReplicas) a.Add("--verify-replicas");
        return a;
    }

    /// <summary>Checks what can be checked before any work starts; the message names the option.</summary>
    public void Validate()
    {
        if (Mode is not ("single" or "dp" or "ddp")) throw new ArgumentException($"--mode must be single, dp or ddp, got '{Mode}'.");
        if (Mode == "dp" && DeviceList().Length < 1) throw new ArgumentException("--devices lists no device.");
        if (Backend is not ("auto" or "host" or "nccl")) throw new ArgumentException($"--backend must be auto, host or nccl, got '{Backend}'.");
        if (!(BucketMb > 0)) throw new ArgumentException($"--bucket-mb must be positive, got {BucketMb}.");
        if (BnMode is not ("train" or "eval")) throw new ArgumentException($"--bn-mode must be train or eval, got '{BnMode}'.");
        if (Profile is not (null or "kernels")) throw new ArgumentException($"--profile must be 'kernels', got '{Profile}'.");
        if (Timeout < 1) throw new ArgumentException($"--timeout must be at least 1 second, got {Timeout}.");
        foreach (string spec in DeviceList())
        {
            if (!System.Text.RegularExpressions.Regex.IsMatch(spec, "^(auto|cpu|cuda|cuda:[0-9]+)$"))
            {
                throw new ArgumentException($"Unknown device '{spec}': expected auto, cpu, cuda or cuda:N.");
            }
        }
        if (Epochs < 1) throw new ArgumentException($"--epochs must be at least 1, got {Epochs}.");
        if (BatchSize < 1) throw new ArgumentException($"--batch-size must be at least 1, got {BatchSize}.");
        if (TrainLimit is < 1) throw new ArgumentException($"--train-limit must be at least 1, got {TrainLimit}.");
        if (TestLimit is < 0) throw new ArgumentException($"--test-limit must be non-negative, got {TestLimit}.");
        if (Augment is not ("standard" or "none")) throw new ArgumentException($"--augment must be standard or none, got '{Augment}'.");
        if (Dataset is not ("cifar10" or "fashion-mnist" or "synthetic")) throw new ArgumentException($"--dataset must be cifar10, fashion-mnist or synthetic, got '{Dataset}'.");
        if (Init is not null && Resume is not null) throw new ArgumentException("--init and --resume cannot be used together: --resume restores the model itself.");
        if (Init is not null && !File.Exists(Init)) throw new ArgumentException($"--init {Init}: no such file.");
        if (Resume is not null && !Engine.Nn.Checkpoints.ModelCheckpoint.Exists(Resume)) throw new ArgumentException($"--resume {Resume}: no such file.");
        if (Resume is not null && !File.Exists(Engine.Nn.Checkpoints.ModelCheckpoint.StatePath(Resume)))
        {
            throw new ArgumentException($"--resume {Resume}: its training-state file {Engine.Nn.Checkpoints.ModelCheckpoint.StatePath(Resume)} is missing (--save writes it beside the model).");
        }
        // Before any set-up: a NaN here would otherwise surface from the optimizer's kernel launcher, after data and devices.
        if (!float.IsFinite(Lr) || Lr < 0) throw new ArgumentException($"--lr must be a finite number >= 0, got {Lr}.");
        if (!float.IsFinite(Momentum) || Momentum < 0) throw new ArgumentException($"--momentum must be a finite number >= 0, got {Momentum}.");
        if (!float.IsFinite(WeightDecay) || WeightDecay < 0) throw new ArgumentException($"--weight-decay must be a finite number >= 0, got {WeightDecay}.");
        if (!double.IsFinite(BucketMb)) throw new ArgumentException($"--bucket-mb must be a finite number, got {BucketMb}.");
        CheckOutputs();
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
