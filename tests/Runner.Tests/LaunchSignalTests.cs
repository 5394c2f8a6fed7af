using System.Diagnostics;

namespace Engine.Runner.Tests;

/// <summary>
/// What a scheduler does to a job: signal or kill the launcher alone. The signal is forwarded to every
/// rank and the launcher exits with its code; a killed launcher's ranks notice and exit. Either way no
/// engine process of the job is left 10 s later.
/// </summary>
[Collection("cpu-training")]
public class LaunchSignalTests
{
    private static readonly TimeSpan Cleanup = TimeSpan.FromSeconds(10);

    [Theory]
    [InlineData("TERM", 15)]
    [InlineData("INT", 2)]
    [InlineData("HUP", 1)]
    [InlineData("KILL", 9)]
    public async Task A_signal_to_the_launcher_leaves_no_rank_behind(string signal, int number)
    {
        string dir = Directory.CreateTempSubdirectory("engine-launch-signal").FullName;
        // The folder's name is in every rank's command line: it tells this job's processes from any other's.
        string marker = Path.Combine(dir, "run.json");
        using var launcher = StartLaunch(marker);
        var stderr = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var training = new TaskCompletionSource();
        launcher.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            stderr.Enqueue(e.Data);
            if (e.Data.StartsWith("[rank 0] epoch 1/", StringComparison.Ordinal)) training.TrySetResult();
        };
        launcher.OutputDataReceived += (_, _) => { };
        launcher.BeginErrorReadLine();
        launcher.BeginOutputReadLine();
        try
        {
            Task started = await Task.WhenAny(training.Task, Task.Delay(TimeSpan.FromMinutes(2)));
            Assert.True(started == training.Task, "the ranks did not start training within 2 minutes:\n" + string.Join('\n', stderr));
            Assert.Equal(2, JobProcesses(marker).Count);

            Signal(launcher.Id, signal);
            var afterSignal = Stopwatch.StartNew();
            Assert.True(launcher.WaitForExit(Cleanup), "the launcher did not exit within 10 s of the signal");
            launcher.WaitForExit();
            List<int> left = JobProcesses(marker);
            while (left.Count > 0 && afterSignal.Elapsed < Cleanup)
            {
                Thread.Sleep(200);
                left = JobProcesses(marker);
            }
            Assert.True(left.Count == 0, $"{left.Count} engine process(es) of the job still running {afterSignal.Elapsed.TotalSeconds:F1} s after SIG{signal}: pids {string.Join(", ", left)}\n" + string.Join('\n', stderr));
            Assert.Equal(128 + number, launcher.ExitCode);
            if (number != 9)
            {
                string log = string.Join('\n', stderr);
                Assert.Contains($"received SIG{signal}; forwarding it to rank 0, rank 1", log);
                Assert.Contains($"exiting with {128 + number}", log);
            }
        }
        finally
        {
            foreach (int pid in JobProcesses(marker)) Signal(pid, "KILL");
            if (!launcher.HasExited) launcher.Kill(entireProcessTree: true);
            Directory.Delete(dir, recursive: true);
        }
    }

    private static Process StartLaunch(string marker)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in new[] { typeof(Program).Assembly.Location, "launch", "--nproc-per-node", "2", "--master-port", "0", "--stop-grace", "3", "--",
                     "train", "--mode", "ddp", "--device", "cpu", "--model", "resnet18", "--width", "2", "--train-limit", "32", "--test-limit", "0",
                     "--batch-size", "4", "--epochs", "100000", "--timeout", "30", "--output", marker })
        {
            psi.ArgumentList.Add(a);
        }
        return Process.Start(psi)!;
    }

    /// <summary>Processes (other than the launcher) whose command line names <paramref name="marker"/>.</summary>
    private static List<int> JobProcesses(string marker)
    {
        var pids = new List<int>();
        foreach (string proc in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out int pid)) continue;
            string cmdline, stat;
            try
            {
                cmdline = File.ReadAllText(Path.Combine(proc, "cmdline")).Replace('\0', ' ');
                stat = File.ReadAllText(Path.Combine(proc, "stat"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue; // exited while we looked
            }
            if (cmdline.Contains(marker, StringComparison.Ordinal) && !cmdline.Contains(" launch ", StringComparison.Ordinal)
                && !stat.Contains(") Z ", StringComparison.Ordinal)) // a zombie has exited; only its parent's wait is missing
            {
                pids.Add(pid);
            }
        }
        return pids;
    }

    private static void Signal(int pid, string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-s", signal, pid.ToString()]) { UseShellExecute = false })!;
        kill.WaitForExit();
    }
}
