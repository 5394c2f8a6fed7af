using System.Diagnostics;
using Engine.Comm.Tests;
using Engine.Nn.Checkpoints;
using Engine.Tests;

namespace Engine.Runner.Tests;

/// <summary>
/// DDP over NCCL as on a two-GPU host, without one: <c>engine launch --nproc-per-node 2 -- train --mode ddp --backend nccl
/// --device cuda</c>, each rank a process with its own simulated GPU and the fake NCCL of native/ between them. One step
/// of a tiny ResNet (rank 0's parameter broadcast, the bucketed gradient all-reduces, the buffer broadcast) must leave
/// the model, its BN statistics and momentum exactly as the same run over the host ring does: with two ranks each
/// sum has one order, so the two backends agree to the bit.
/// Four simulated-GPU processes make it slow (9.5 minutes on the 2-core VM under load, docs/PERF.md): it has a
/// category of its own, outside .ci/run's simulated-GPU filter; run it with
/// <c>dotnet test tests/Runner.Tests -c Release --filter Category=SimulatedGpuDdp</c> after sourcing the simulator's env.sh.
/// </summary>
[Trait("Category", "SimulatedGpuDdp")]
public class SimulatedGpuDdpNcclTests
{
    [FakeNcclFact]
    public void A_ddp_step_over_nccl_leaves_the_host_ring_s_model()
    {
        string folder = SimulatedGpu.PrepareFolder();
        try
        {
            var nccl = Tensors(Ddp(folder, "nccl"));
            var host = Tensors(Ddp(folder, "host"));
            Assert.Equal(host.Keys.Order(), nccl.Keys.Order());
            foreach ((string name, SafeTensor expected) in host)
            {
                SafeTensor actual = nccl[name];
                if (expected.DType == "I64")
                {
                    Assert.Equal(expected.ToInt64(), actual.ToInt64());
                    continue;
                }
                float[] e = expected.ToFloats(), a = actual.ToFloats();
                int first = Enumerable.Range(0, e.Length).FirstOrDefault(i => BitConverter.SingleToInt32Bits(e[i]) != BitConverter.SingleToInt32Bits(a[i]), -1);
                Assert.True(first < 0, $"{name}[{first}]: nccl {(first < 0 ? 0 : a[first]):R}, host ring {(first < 0 ? 0 : e[first]):R}");
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static Dictionary<string, SafeTensor> Tensors(string model)
        => SafeTensors.Read(model).Tensors.Concat(SafeTensors.Read(ModelCheckpoint.StatePath(model)).Tensors).ToDictionary();

    /// <summary>Runs the two-rank DDP step from <paramref name="folder"/> (the simulator's configuration is there); returns rank 0's saved model.</summary>
    private static string Ddp(string folder, string backend)
    {
        string save = Path.Combine(folder, $"{backend}.safetensors");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = folder };
        foreach (string a in new[]
                 {
                     typeof(Program).Assembly.Location, "launch", "--nproc-per-node", "2", "--", "train", "--mode", "ddp", "--backend", backend,
                     "--device", "cuda", "--model", "resnet18", "--stem", "imagenet", "--width", "2", "--dataset", "synthetic", "--train-limit", "16",
                     "--test-limit", "0", "--epochs", "1", "--batch-size", "8", "--seed", "3", "--timeout", "300", "--save", save,
                 })
        {
            psi.ArgumentList.Add(a);
        }
        foreach ((string name, string value) in FakeNccl.Variables())
        {
            psi.Environment[name] = value;
        }
        using var p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync(), stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            p.Kill(entireProcessTree: true);
        }
        p.WaitForExit();
        string log = stderr.Result;
        Assert.True(p.ExitCode == 0, $"ddp over {backend} exited {p.ExitCode}:\n{log}");
        Assert.Contains($"backend {backend}", log + stdout.Result, StringComparison.Ordinal);
        return save;
    }
}
