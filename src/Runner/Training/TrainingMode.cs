using System.Text.Json;
using System.Text.Json.Serialization;
using Engine.Comm;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Training;

/// <summary>
/// A way to train, named as on the command line (<c>--mode</c>): its label, what it is, how its trainer is made
/// and, for the multi-process modes, its strategy. The one table of modes: parsing, help text, the launcher, the
/// comparison and the report all read it. A new strategy is one entry here.
/// </summary>
[JsonConverter(typeof(TrainingModeJsonConverter))]
public sealed class TrainingMode
{
    private readonly Func<TrainOptions, TextWriter, TextWriter, Trainer> _trainer;
    private readonly Func<ICommunicator, Device, DistributedSettings, DistributedStrategy>? _strategy;

    private TrainingMode(string name, string label, string summary, Func<TrainOptions, TextWriter, TextWriter, Trainer> trainer,
        Func<ICommunicator, Device, DistributedSettings, DistributedStrategy>? strategy = null)
    {
        Name = name;
        Label = label;
        Summary = summary;
        _trainer = trainer;
        _strategy = strategy;
    }

    public static readonly TrainingMode Single = new("single", "Single", "one device",
        (o, s, p) => new SingleTrainer(o, s, p));

    public static readonly TrainingMode Dp = new("dp", "DP", "torch.nn.DataParallel: one process scatters each batch over the devices and reduces gradients onto device 0",
        (o, s, p) => new DataParallelTrainer(o, s, p));

    public static readonly TrainingMode Ddp = new("ddp", "DDP", "DistributedDataParallel: one process per device, gradients all-reduced in buckets that overlap backward",
        (o, s, p) => new DistributedTrainer(o, s, p), (c, d, st) => new DistributedDataParallel(c, d, st));

    public static readonly TrainingMode Zero1 = new("zero1", "ZeRO-1", "ZeRO stage 1: DDP's all-reduce; each rank keeps and updates 1/N of the optimizer state, then parameters are all-gathered",
        (o, s, p) => new DistributedTrainer(o, s, p), (c, d, st) => new Zero(1, c, d, st));

    public static readonly TrainingMode Zero2 = new("zero2", "ZeRO-2", "ZeRO stage 2: gradients reduce-scattered into shards as buckets fill; optimizer state sharded; parameters all-gathered",
        (o, s, p) => new DistributedTrainer(o, s, p), (c, d, st) => new Zero(2, c, d, st));

    public static readonly TrainingMode Fsdp = new("fsdp", "FSDP", "FullyShardedDataParallel (ZeRO-3): parameters, gradients and optimizer state sharded; each unit all-gathered before its forward and backward",
        (o, s, p) => new DistributedTrainer(o, s, p), (c, d, st) => new FullyShardedDataParallel(c, d, st));

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

    public DistributedStrategy CreateStrategy(ICommunicator comm, Device device, DistributedSettings settings)
        => _strategy?.Invoke(comm, device, settings) ?? throw new InvalidOperationException($"--mode {Name} runs in one process and has no distributed strategy.");

    /// <summary>The mode named <paramref name="name"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No mode has that name; the message lists them.</exception>
    public static TrainingMode Parse(string name) => All.FirstOrDefault(m => string.Equals(m.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"--mode must be one of {Names}, got '{name}'.");

    /// <summary>"single | dp | ddp | zero1 | zero2 | fsdp".</summary>
    public static string Names => string.Join(" | ", All.Select(m => m.Name));

    /// <summary>The label of a mode named in a result file; the name itself for one this build does not know.</summary>
    public static string LabelOf(string name) => All.FirstOrDefault(m => m.Name == name)?.Label ?? name;

    public override string ToString() => Name;
}

internal sealed class TrainingModeJsonConverter : JsonConverter<TrainingMode>
{
    public override TrainingMode Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        => TrainingMode.Parse(reader.GetString() ?? throw new JsonException("A training mode must be a string."));

    public override void Write(Utf8JsonWriter writer, TrainingMode value, JsonSerializerOptions options) => writer.WriteStringValue(value.Name);
}
