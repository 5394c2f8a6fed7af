using System.Text.Json;
using System.Text.Json.Serialization;
using Engine.Nn;

namespace Engine.Runner;

public sealed record EpochResult(
    [property: JsonPropertyName("epoch")] int Epoch,
    [property: JsonPropertyName("seconds")] double Seconds,
    [property: JsonPropertyName("train_loss")] double TrainLoss,
    [property: JsonPropertyName("train_accuracy")] double TrainAccuracy,
    [property: JsonPropertyName("test_accuracy")] double? TestAccuracy,
    [property: JsonPropertyName("steps")] int Steps,
    [property: JsonPropertyName("images_per_second")] double ImagesPerSecond);

/// <summary>What <c>--output</c> writes: the configuration, the device, one entry per epoch, and the seed's summary numbers.</summary>
public sealed record RunResult(
    [property: JsonPropertyName("config")] TrainOptions Config,
    [property: JsonPropertyName("device")] string Device,
    [property: JsonPropertyName("dataset")] string Dataset,
    [property: JsonPropertyName("parameters")] long Parameters,
    [property: JsonPropertyName("epochs")] IReadOnlyList<EpochResult> Epochs)
{
    /// <summary>Seconds and bytes per step of each phase (data, h2d, scatter, ..., optimizer).</summary>
    [JsonPropertyName("breakdown")]
    public Breakdown? Breakdown { get; init; }

    /// <summary>Device memory of every rank (or replica) after training, by use, and its peak during training (bytes).</summary>
    [JsonPropertyName("memory")]
    public IReadOnlyList<RankMemory>? Memory { get; init; }

    /// <summary>With --profile kernels: every kernel's calls, seconds, FLOPs and bytes over the timed steps.</summary>
    [JsonPropertyName("kernel_profile")]
    public IReadOnlyList<Engine.Kernels.KernelStat>? KernelProfile { get; init; }

    /// <summary>Mean over all epochs, as the seed computes it.</summary>
    [JsonPropertyName("mean_epoch_seconds")]
    public double MeanEpochSeconds => Epochs.Count == 0 ? 0 : Epochs.Average(e => e.Seconds);

    /// <summary>Mean without the first epoch (which pays for kernel compilation and warm-up); null with one epoch.</summary>
    [JsonPropertyName("mean_epoch_seconds_excluding_first")]
    public double? MeanEpochSecondsExcludingFirst => Epochs.Count < 2 ? null : Epochs.Skip(1).Average(e => e.Seconds);

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Writes the JSON atomically (temp file + rename) so a reader never sees half a file.</summary>
    public void Write(string path) => AtomicFile.WriteAllText(path, JsonSerializer.Serialize(this, Json));
}
