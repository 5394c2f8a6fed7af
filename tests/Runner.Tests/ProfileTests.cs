using Engine.Runner.Training;

namespace Engine.Runner.Tests;

/// <summary>--profile kernels: the per-kernel table accounts for the step time.</summary>
[Collection("cpu-training")]
public class ProfileTests
{
    [Fact]
    public void Kernel_table_accounts_for_the_step_time()
    {
        var o = new TrainOptions
        {
            Device = "cpu", Model = "resnet18", Width = 4, TrainLimit = 48, TestLimit = 0, Epochs = 2, BatchSize = 16, Profile = "kernels",
        };
        using var t = new SingleTrainer(o, TextWriter.Null, TextWriter.Null);
        RunResult r = t.Run();
        var k = r.KernelProfile!;
        double kernels = k.Sum(s => s.Seconds), steps = t.Clock!.StepSeconds;
        // Every kernel of the step is inside a step: their sum cannot exceed the steps' time, and on the
        // CPU accelerator (kernels run as they are launched) they are nearly all of it.
        Assert.True(kernels <= steps * 1.02, $"kernels {kernels:F3} s > steps {steps:F3} s");
        Assert.True(kernels >= steps * 0.5, $"kernels {kernels:F3} s cover too little of the steps' {steps:F3} s");
        Assert.Contains(k, s => s.Name == "conv2d_fwd" && s.Calls == 2 * 3 * 20 && s.Flops > 0);
        Assert.Contains(k, s => s.Name == "sgd_step" && s.Calls == 6);
    }
}
