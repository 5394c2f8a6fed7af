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
        foreach (string op in new[] { "conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weight", "batchnorm_fwd_train", "batchnorm_bwd", "batchnorm_relu_bwd",
                     "batchnorm_add_relu_bwd", "relu_fwd", "add_fwd", "maxpool_bwd", "avgpool_bwd", "linear_bwd_dw", "softmax_xent_bwd", "sgd_step x3", "augment" })
        {
            Assert.Contains(results, r => r.Kernel == op);
        }
        foreach (string op in new[] { "batchnorm_bwd (scalar)", "batchnorm_add_relu_fwd_train (scalar)", "relu_bwd (scalar)", "add_fwd (scalar)", "sgd_step x3 (scalar)" })
        {
            Assert.Contains(results, r => r.Kernel == op);
        }
        Assert.DoesNotContain(results, r => r.Kernel.Contains("tf32", StringComparison.Ordinal)); // CUDA only
    });

    [Fact]
    public void A_check_that_throws_fails_its_row_and_the_rest_still_run() => TestDevice.Use(dev =>
    {
        var c = new KernelChecks(dev, new Random(3));
        c.Guard("conv2d_fwd_tf32", "N=1", () => throw new InvalidOperationException("the driver refused the PTX"));
        c.Guard("relu", "n=10", () => c.Relu(10));
        KernelCheckResult failed = c.Results[0];
        Assert.False(failed.Passed);
        Assert.Equal("conv2d_fwd_tf32", failed.Kernel);
        Assert.Contains("the driver refused the PTX", failed.Failure);
        Assert.Contains(c.Results, r => r.Kernel == "relu_fwd" && r.Passed);
    });
}
