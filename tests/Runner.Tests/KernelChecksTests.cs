using Engine.Kernels.Cases;
using ILGPU.Runtime;
using Engine.Runner.Checks;
using Engine.Tests;

namespace Engine.Runner.Tests;

/// <summary>`engine check kernels` (the GPU half of the kernel tests) works and covers every op, here on the CPU accelerator.</summary>
public class KernelChecksTests
{
    [Fact]
    public void Every_kernel_check_runs_and_passes_on_the_cpu() => TestDevice.Use(dev =>
    {
        var results = KernelChecks.RunAll(dev, seed: Random.Shared.Next(), large: false);
        Assert.All(results, r => Assert.True(r.Passed, $"{r.Kernel} {r.Shape}: error {r.MaxError}"));
        foreach (string op in new[] { "conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weight", "batchnorm_fwd_train", "batchnorm_bwd", "batchnorm_relu_fwd_train",
                     "batchnorm_relu_bwd", "batchnorm_add_relu_fwd_train", "batchnorm_add_relu_bwd", "relu_fwd", "relu_bwd", "add_fwd", "maxpool_fwd", "maxpool_bwd",
                     "avgpool_fwd", "avgpool_bwd", "linear_fwd", "linear_bwd", "softmax_xent_fwd", "softmax_xent_bwd", "sgd_step", "augment",
                     "conv2d_fwd_db", "conv2d_bwd_data_phase_db", "conv2d_bwd_weight_db", "float16_compress", "float16_decompress" })
        {
            Assert.Contains(results, r => r.Kernel == op);
        }
        foreach (string op in new[] { "batchnorm_bwd (scalar)", "batchnorm_add_relu_fwd_train (scalar)", "relu_bwd (scalar)", "add_fwd (scalar)", "sgd_step (scalar)" })
        {
            Assert.Contains(results, r => r.Kernel == op);
        }
        Assert.DoesNotContain(results, r => r.Kernel.Contains("tf32", StringComparison.Ordinal)); // CUDA only
    });

    /// <summary>A wrong kernel fails its row, naming the output and the element: a ReLU that lets negative inputs through.</summary>
    [Fact]
    public void A_wrong_kernel_fails_its_row_naming_the_output() => TestDevice.Use(dev =>
    {
        var c = new KernelChecks(dev, new Random(Random.Shared.Next()));
        c.Run("relu_fwd", "n=64", r => UnaryCase.ReluForward(dev, r, 64), (d, x, y) => x.CopyTo(d.Stream, y));
        KernelCheckResult row = Assert.Single(c.Results);
        Assert.True(row.Failed);
        Assert.Contains("y: error", row.Detail);
    });

    [Fact]
    public void A_check_that_throws_fails_its_row_and_the_rest_still_run() => TestDevice.Use(dev =>
    {
        var c = new KernelChecks(dev, new Random(3));
        c.Guard("conv2d_fwd_tf32", "N=1", () => throw new InvalidOperationException("the driver refused the PTX"));
        c.Run(CaseCheck.Of("relu_fwd", "n=10", (d, r) => UnaryCase.ReluForward(d, r, 10), Engine.Kernels.Relu.Forward));
        KernelCheckResult failed = c.Results[0];
        Assert.False(failed.Passed);
        Assert.Equal("conv2d_fwd_tf32", failed.Kernel);
        Assert.Contains("the driver refused the PTX", failed.Failure);
        Assert.Contains(c.Results, r => r.Kernel == "relu_fwd" && r.Passed);
    });
}

/// <summary>`engine check kernels --device cuda` on the simulated GPU: every check passes; only the TF32 rows are skipped, saying why.</summary>
[Collection("console")]
[Trait("Category", "SimulatedGpu")]
public class SimulatedGpuKernelChecksTests
{
    [SimulatedGpuFact]
    public void Every_kernel_check_passes_on_the_simulated_gpu_and_only_tf32_is_skipped()
    {
        SimulatedGpu.EnterWorkingFolder();
        int seed = Random.Shared.Next();
        var (code, stdout, stderr) = Cli.Run("check", "kernels", "--device", "cuda", "--seed", $"{seed}");
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(code == 0, $"engine check kernels --device cuda --seed {seed} exited {code}:\n{stdout}\n{stderr}");
        Assert.Contains("GPGPU-Sim", lines[0]);
        Assert.DoesNotContain(lines, l => l.StartsWith("FAIL", StringComparison.Ordinal));
        string[] skipped = lines.Where(l => l.StartsWith("skip", StringComparison.Ordinal)).ToArray();
        Assert.NotEmpty(skipped);
        Assert.All(skipped, l => Assert.Matches(@"^skip conv2d_fwd_tf32(_smem_acc)? ", l));
        Assert.All(skipped, l => Assert.Contains("cannot parse the TF32 tensor-core instructions", l));
        foreach (string op in new[] { "conv2d_fwd", "conv2d_bwd_weight", "batchnorm_add_relu_bwd", "maxpool_bwd", "softmax_xent_bwd", "sgd_step", "augment", "relu_bwd (scalar)" })
        {
            Assert.Contains(lines, l => l.StartsWith($"ok   {op} ", StringComparison.Ordinal));
        }
    }
}
