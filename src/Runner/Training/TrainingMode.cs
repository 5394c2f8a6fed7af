using System.Text.Json;
using System.Text.Json.Serialization;
using Engine.Comm;
using Engine.Runner.Compare;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>
/// A way to train, named as on the command line (<c>--mode</c>): its label, what it is, how its trainer is made,
/// for the multi-process modes its strategy, and the sentence <c>engine compare</c> writes about a measured run of
/// it. The one table of modes: parsing, help text, the launcher, the comparison and the report all read it. A new
/// strategy is one entry here.
/// </summary>
[JsonConverter(typeof(TrainingModeJsonConverter))]
public sealed class TrainingMode
{
    private readonly Func<TrainOptions, TextWriter, TextWriter, Trainer> _trainer;
    private readonly Func<ICommunicator, Device, DistributedSettings, DistributedStrategy>? _strategy;
    private readonly Func<Comparison.ModeFacts, string> _explain;

    private TrainingMode(string name, string label, string summary, Func<TrainOptions, TextWriter, TextWriter, Trainer> trainer,
        Func<Comparison.ModeFacts, string> explain, Func<ICommunicator, Device, DistributedSettings, DistributedStrategy>? strategy = null)
    {
        Name = name;
        Label = label;
        Summary = summary;
        _trainer = trainer;
        _explain = explain;
        _strategy = strategy;
    }

    public static readonly TrainingMode Single = new("single", "Single", "one device",
        (o, s, p) => new SingleTrainer(o, s, p),
        f => "Single device: the step is the model's compute plus loading the batch");

    public static readonly TrainingMode Dp = new("dp", "DP", "torch.nn.DataParallel: one process scatters each batch over the devices and reduces gradients onto device 0",
        (o, s, p) => new DataParallelTrainer(o, s, p),
        f => $"DP over {f.Devices} devices: every step one process scatters the batch from device 0, copies all parameters and buffers to the other devices ({f.BytesOf("replicate")}), gathers the outputs, and sums every gradient back onto device 0 ({f.BytesOf("grad_sync")}), all serialised through device 0");

    public static readonly TrainingMode Ddp = new("ddp", "DDP", "DistributedDataParallel: one process per device, gradients all-reduced in buckets that overlap backward",
        (o, s, p) => new DistributedTrainer(o, s, p),
        f => string.Format(System.Globalization.CultureInfo.InvariantCulture,
            "DDP over {0} ranks: each process keeps its own model; only gradients move, {1} per rank per step in the ring all-reduce, in buckets that start while backward is still running ({2:F1} ms of all-reduce hidden behind backward, {3:F1} ms exposed after it){4}",
            f.Devices, f.BytesOf("grad_sync"), f.GradSyncMs.Hidden, f.GradSyncMs.Exposed, f.State),
        (c, d, st) => new DistributedDataParallel(c, d, st));

    public static readonly TrainingMode Zero1 = new("zero1", "ZeRO-1", "ZeRO stage 1: DDP's all-reduce; each rank keeps and updates 1/N of the optimizer state, then parameters are all-gathered",
        (o, s, p) => new DistributedTrainer(o, s, p),
        f => $"ZeRO-1 over {f.Devices} ranks: gradients are all-reduced as in DDP ({f.Exposed("grad_sync")}); each rank then updates only its 1/{f.Devices} of the parameters with its 1/{f.Devices} of the momentum and all-gathers the parameters ({f.Exposed("all_gather")}){f.State}",
        (c, d, st) => new Zero(1, c, d, st));

    public static readonly TrainingMode Zero2 = new("zero2", "ZeRO-2", "ZeRO stage 2: gradients reduce-scattered into shards as buckets fill; optimizer state sharded; parameters all-gathered",
        (o, s, p) => new DistributedTrainer(o, s, p),
        f => $"ZeRO-2 over {f.Devices} ranks: each gradient bucket is reduce-scattered as backward fills it, so a rank keeps only its shard of the gradients ({f.Exposed("reduce_scatter")}); after its shard's update the parameters are all-gathered ({f.Exposed("all_gather")}); the bytes are DDP's, split in two collectives{f.State}",
        (c, d, st) => new Zero(2, c, d, st));

    public static readonly TrainingMode Fsdp = new("fsdp", "FSDP", "FullyShardedDataParallel (ZeRO-3): parameters, gradients and optimizer state sharded; each unit all-gathered before its forward and backward",
        (o, s, p) => new DistributedTrainer(o, s, p),
        f => $"FSDP over {f.Devices} ranks: parameters, gradients and momentum are all sharded; each unit's parameters are all-gathered before its forward and again before its backward, the next unit's prefetched ({f.Exposed("all_gather")}), and its gradients reduce-scattered after its backward ({f.Exposed("reduce_scatter")}): 1.5x DDP's bytes for 1/{f.Devices} of the memory{f.State}",
        (c, d, st) => new FullyShardedDataParallel(c, d, st));

    /// <summary>Every mode, in the order tables list them.</summary>
    public static readonly IReadOnlyList<TrainingMode> All = new[] { Single, Dp, Ddp, Zero1, Zero2, Fsdp };

    /// <summary>The seed benchmark's three, the default of <c>engine compare</c>.</summary>
    public static readonly IReadOnlyList<TrainingMode> Seed = new[] { Single, Dp, Ddp };

    /// <summary>The name on the command line and in JSON.</summary>
    public string Name { get; }

    /// <summary>How tables and charts print it (DDP, ZeRO-2).</summary>
    public string Label { get; }

    public string Summary { get; }

    /// <summary>One process per device, started by <c>engine launch</c> (or torchrun's variables).</summary>
    public bool MultiProcess => _strategy is not null;

    /// <summary>Whether the mode shards model state over ranks (ZeRO, FSDP).</summary>
    public bool Sharded => MultiProcess && this != Ddp;

    public Trainer CreateTrainer(TrainOptions options, TextWriter stdout, TextWriter progress) => _trainer(options, stdout, progress);

    /// <summary>What the mode moves and where its time goes, in one sentence quoting a measured run (<c>engine compare</c>'s explanation).</summary>
    public string Explain(Comparison.ModeFacts facts) => _explain(facts);

    public DistributedStrategy CreateStrategy(ICommunicator comm, Device device, DistributedSettings settings)
        => _strategy?.Invoke(comm, device, settings) ?? throw new InvalidOperationException($"--mode {Name} runs in one process and has no distributed strategy.");

    /// <summary>The mode named <paramref name="name"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No mode has that name; the message lists them.</exception>
    public static TrainingMode Parse(string name) => All.FirstOrDefault(m => string.Equals(m.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"--mode must be one of {Names}, got '{name}'.");

    /// <summary>"single | dp | ddp | zero1 | zero2 | fsdp".</summary>
    public static string Names => string.Join(" | ", All.Select(m => m.Name));

    /// <summary>The mode named in a result file, or null for one this build does not know.</summary>
    public static TrainingMode? Named(string name) => All.FirstOrDefault(m => m.Name == name);

    /// <summary>The label of a mode named in a result file; the name itself for one this build does not know.</summary>
    public static string LabelOf(string name) => Named(name)?.Label ?? name;

    public override string ToString() => Name;
}

internal sealed class TrainingModeJsonConverter : JsonConverter<TrainingMode>
{
    public override TrainingMode Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        => TrainingMode.Parse(reader.GetString() ?? throw new JsonException("A training mode must be a string."));

    public override void Write(Utf8JsonWriter writer, TrainingMode value, JsonSerializerOptions options) => writer.WriteStringValue(value.Name);
}
