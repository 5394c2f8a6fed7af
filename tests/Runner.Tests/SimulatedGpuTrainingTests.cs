using System.Text.Json;
using Engine.Kernels;
using Engine.Nn;
using Engine.Nn.Checkpoints;
using Engine.Tests;

namespace Engine.Runner.Tests;

/// <summary>
/// `engine train --device cuda` on the simulated GPU (the real CUDA path: PTX, NVIDIA's assembler, warps of 32, the GPU
/// tuning, split-K, float4 passes, fused BN ops) against `engine train --device cpu`, one step of the same tiny run.
/// Width 2 and batch 8 keep the simulation near a minute; batch 8 also keeps batch norm well conditioned at the
/// last stage's 1x1 maps (with batch 2, xhat is +-1 there and BN's dx is cancellation noise on any device).
/// </summary>
public sealed class SimulatedGpuTrainingRun : IDisposable
{
    public const int Seed = 3;
    public const int Width = 2;
    public const int BatchSize = 8;

    public string Folder { get; }
    public string CudaModel => Path.Combine(Folder, "cuda.safetensors");
    public string CpuModel => Path.Combine(Folder, "cpu.safetensors");
    public string CudaJson => Path.Combine(Folder, "cuda.json");
    public string CpuJson => Path.Combine(Folder, "cpu.json");
    public string CudaTrace => Path.Combine(Folder, "cuda-trace.json");
    public string CudaStdout { get; }

    /// <summary>The model's state before the step, as both runs initialise it from <see cref="Seed"/>.</summary>
    public IReadOnlyDictionary<string, SafeTensor> Initial { get; }

    public SimulatedGpuTrainingRun()
    {
        SimulatedGpu.EnterWorkingFolder();
        Folder = Directory.CreateTempSubdirectory("engine-simulated-train-").FullName;
        CudaStdout = Train("cuda", CudaModel, CudaJson, "--profile", "kernels", "--trace", CudaTrace);
        Train("cpu", CpuModel, CpuJson);
        using var model = new ResNet(TestDevice.Cpu, ResNetConfig.Parse("resnet18", "imagenet", Width));
        model.Initialize(Seed);
        Initial = ModelCheckpoint.StateDict(model).ToDictionary(t => t.Name);
    }

    private static string Train(string device, string save, string json, params string[] extra)
    {
        string[] args =
        [
            "train", "--device", device, "--model", "resnet18", "--stem", "imagenet", "--width", $"{Width}", "--dataset", "synthetic",
            "--train-limit", $"{BatchSize}", "--test-limit", "0", "--epochs", "1", "--batch-size", $"{BatchSize}", "--seed", $"{Seed}",
            "--save", save, "--output", json, .. extra,
        ];
        var (code, stdout, stderr) = Cli.Run(args);
        Assert.True(code == 0, $"engine {string.Join(' ', args)} exited {code}:\n{stderr}");
        return stdout;
    }

    public void Dispose() => Directory.Delete(Folder, recursive: true);
}

[Collection("console")]
[Trait("Category", "SimulatedGpu")]
public class SimulatedGpuTrainingTests : IClassFixture<SimulatedGpuTrainingRun>
{
    /// <summary>The kernel tests' float32 tolerance (|cuda - cpu| &lt;= Atol + Rtol·|cpu|), applied to the whole step.</summary>
    private const double Rtol = 1e-4, Atol = 1e-5;

    private readonly SimulatedGpuTrainingRun _run;

    public SimulatedGpuTrainingTests(SimulatedGpuTrainingRun run) => _run = run;

    private static bool Within(double expected, double actual) => Math.Abs(actual - expected) <= Atol + Rtol * Math.Abs(expected);

    [SimulatedGpuFact]
    public void The_run_was_on_the_simulated_gpu()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(_run.CudaJson));
        Assert.Contains("GPGPU-Sim", doc.RootElement.GetProperty("device").GetString());
    }

    [SimulatedGpuFact]
    public void One_step_gives_the_cpu_accelerator_s_loss_parameters_statistics_and_momentum()
    {
        double Loss(string json)
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(json));
            return doc.RootElement.GetProperty("epochs")[0].GetProperty("train_loss").GetDouble();
        }
        double cpuLoss = Loss(_run.CpuJson), cudaLoss = Loss(_run.CudaJson);
        Assert.True(Within(cpuLoss, cudaLoss), $"loss: simulated GPU {cudaLoss:R}, CPU accelerator {cpuLoss:R}");

        var cpu = SafeTensors.Read(_run.CpuModel).Tensors.Values.Concat(SafeTensors.Read(ModelCheckpoint.StatePath(_run.CpuModel)).Tensors.Values).ToList();
        var cuda = SafeTensors.Read(_run.CudaModel).Tensors.Concat(SafeTensors.Read(ModelCheckpoint.StatePath(_run.CudaModel)).Tensors).ToDictionary();
        Assert.Equal(cpu.Select(t => t.Name).Order(), cuda.Keys.Order());
        foreach (SafeTensor expected in cpu)
        {
            SafeTensor actual = cuda[expected.Name];
            if (expected.DType == "I64")
            {
                Assert.Equal(expected.ToInt64(), actual.ToInt64());
                continue;
            }
            Numerics.AssertClose(Array.ConvertAll(expected.ToFloats(), v => (double)v), actual.ToFloats(), Rtol, Atol,
                what: $"{expected.Name} after one step, simulated GPU vs CPU accelerator");
        }
    }

    /// <summary>The comparison above can fail: the step moves every float tensor of the model by more than the tolerance.</summary>
    [SimulatedGpuFact]
    public void The_step_moves_every_tensor_beyond_the_tolerance()
    {
        foreach (SafeTensor trained in SafeTensors.Read(_run.CpuModel).Tensors.Values.Where(t => t.DType == "F32"))
        {
            float[] before = _run.Initial[trained.Name].ToFloats(), after = trained.ToFloats();
            Assert.True(before.Zip(after).Any(p => !Within(p.Second, p.First)), $"{trained.Name}: one step left it within the tolerance of its initial value");
        }
    }

    /// <summary>
    /// --profile kernels on the simulated GPU: the table comes from the CUDA events around each launch (simulated time:
    /// 0 ms in the functional mode CI runs, cycles under a timing configuration) and counts every launch of the step.
    /// </summary>
    [SimulatedGpuFact]
    public void Kernel_profile_counts_the_step_s_launches_from_the_simulated_gpu_s_events()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(_run.CudaJson));
        var rows = doc.RootElement.GetProperty("kernel_profile").EnumerateArray()
            .ToDictionary(k => k.GetProperty("name").GetString()!, k => k);
        // torchvision's resnet18: 1 stem + 16 block + 3 downsample convolutions; one SGD step over the flat store.
        Assert.Equal(20, rows["conv2d_fwd"].GetProperty("calls").GetInt32());
        Assert.Equal(1, rows.Where(r => r.Key.StartsWith("sgd_step", StringComparison.Ordinal)).Sum(r => r.Value.GetProperty("calls").GetInt32()));
        Assert.All(rows.Values, r => Assert.True(r.GetProperty("seconds").GetDouble() >= 0));
        Assert.Contains("Kernel_conv2d_fwd", _run.CudaStdout);
    }

    /// <summary>--trace on the simulated GPU: the kernels appear on the CUDA device's kernel track, placed by its events.</summary>
    [SimulatedGpuFact]
    public void Trace_has_the_simulated_gpu_s_kernels_on_their_own_track()
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(_run.CudaTrace));
        var events = doc.RootElement.GetProperty("traceEvents").EnumerateArray().ToList();
        var tracks = events.Where(e => e.GetProperty("ph").GetString() == "M" && e.GetProperty("name").GetString() == "thread_name")
            .ToDictionary(e => e.GetProperty("tid").GetInt32(), e => e.GetProperty("args").GetProperty("name").GetString()!);
        var kernels = events.Where(e => e.GetProperty("ph").GetString() == "X" && e.GetProperty("name").GetString()!.StartsWith("Kernel_", StringComparison.Ordinal)).ToList();
        Assert.Contains(kernels, e => e.GetProperty("name").GetString() == "Kernel_conv2d_fwd");
        Assert.All(kernels, e => Assert.Contains("(cuda:0)", tracks[e.GetProperty("tid").GetInt32()]));
        Assert.All(kernels, e => Assert.True(e.GetProperty("dur").GetDouble() >= 0));
    }
}
