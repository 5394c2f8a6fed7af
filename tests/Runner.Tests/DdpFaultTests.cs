using System.Diagnostics;

namespace Engine.Runner.Tests;

/// <summary>A DDP rank that dies mid-epoch fails the whole run within the timeout, naming the lost rank; nothing hangs.</summary>
[Collection("cpu-training")]
public class DdpFaultTests
{
    [Fact]
    public async Task A_killed_rank_fails_the_run_naming_it()
    {
        string engine = typeof(Program).Assembly.Location;
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { engine, "launch", "--nproc-per-node", "2", "--", "train", "--mode", "ddp", "--device", "cpu", "--model", "resnet18",
                     "--width", "2", "--train-limit", "64", "--test-limit", "0", "--batch-size", "4", "--epochs", "1", "--timeout", "20" })
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["ENGINE_FAULT_KILL"] = "1:2";
        var watch = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        Task<string> err = p.StandardError.ReadToEndAsync();
        Task<string> output = p.StandardOutput.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        bool exited = true;
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            exited = false;
            p.Kill(entireProcessTree: true);
        }
        Assert.True(exited, "launch did not exit after a rank was killed");
        string stderr = await err + await output;
        Assert.NotEqual(0, p.ExitCode);
        Assert.Contains("rank 1", stderr);
        Assert.True(watch.Elapsed < TimeSpan.FromMinutes(4), $"took {watch.Elapsed}");
    }
}
