using System.Globalization;
using System.Text.RegularExpressions;
using Engine.Runner.Compare;
using Engine.Runner.Report;
using Engine.Runner.Training;

namespace Engine.Runner.Tests;

/// <summary>
/// What a user reads while and after a run: a progress line with a rate and an ETA (evaluation too),
/// per-image phase figures that compare modes whose steps differ in size, a reason when DDP hides
/// nothing, a default compare whose gradient is cut into buckets, and the CPU's real memory.
/// </summary>
[Collection("console")]
public class WhatUsersSeeTests
{
    [Fact]
    public void Progress_gives_the_rate_and_the_epoch_and_run_eta()
    {
        // 10 of 100 steps of 32 images in 5 s: 64 img/s; 90 steps left at 0.5 s; then 2 epochs of 100 steps.
        Assert.Equal("64 img/s, epoch ETA 45 s, run ETA 2 min 25 s", ProgressLine.Training(10, 100, 32, 5.0, 2));
        Assert.Equal("125 img/s, ETA 6 s", ProgressLine.Evaluation(250, 1000, 2.0));
        Assert.Equal("3 h 20 min", ProgressLine.Duration(12_000));
        Assert.Equal("?", ProgressLine.Duration(null));
    }

    [Fact]
    public void Train_reports_rate_and_eta_while_training_and_evaluating()
    {
        var (code, _, err) = Cli.Run("train", "--device", "cpu", "--model", "resnet18", "--width", "2", "--train-limit", "16", "--test-limit", "8",
            "--batch-size", "4", "--epochs", "2");
        Assert.True(code == 0, err);
        var steps = Regex.Matches(err, @"^epoch (\d)/2 step 4/4 .* (\d+) img/s, epoch ETA 0 s, run ETA ([^)]+)\)", RegexOptions.Multiline);
        Assert.Equal(2, steps.Count);
        Assert.Equal("0 s", steps[1].Groups[3].Value); // nothing left after the last step of the last epoch
        Assert.Equal(2, Regex.Matches(err, @"^evaluation 8/8 images \(.* \d+ img/s, ETA 0 s\)", RegexOptions.Multiline).Count);
    }

    [Fact]
    public void Phase_figures_are_per_image_where_dp_and_ddp_steps_carry_every_devices_batch()
    {
        ComparisonResult c = ReportTests.Example();
        ModeResult single = c.Modes[0], dp = c.Modes[1];
        Assert.Equal(single.Run.Config.BatchSize, ReportText.ImagesPerStep(single));
        Assert.Equal(2 * dp.Run.Config.BatchSize, ReportText.ImagesPerStep(dp));
        string md = ReportText.Build(c, []);
        string PerImage(ModeResult m) => (1e6 * m.Run.Breakdown!.StepSeconds / (m.Run.Config.BatchSize * m.Devices)).ToString("F1", CultureInfo.InvariantCulture);
        Assert.Contains($"**{PerImage(single)} us/image** | **{PerImage(dp)} us/image**", md);
        Assert.Contains("| images per step | 512 | 1024 | 1024 |", md);
    }

    [Fact]
    public void A_ddp_run_with_one_bucket_says_why_nothing_overlapped()
    {
        ComparisonResult c = ReportTests.Example();
        ModeResult Ddp(int buckets) => c.Modes[2] with { Run = c.Modes[2].Run with { Breakdown = c.Modes[2].Run.Breakdown! with { GradientBuckets = buckets } } };
        Assert.Null(ReportText.OneBucketNote(Ddp(5)));
        string? note = ReportText.OneBucketNote(Ddp(1));
        Assert.NotNull(note);
        Assert.Contains("fits one bucket", note);
        Assert.Contains("--bucket-mb", note);
        var oneBucket = c with { Modes = [c.Modes[0], c.Modes[1], Ddp(1)] };
        Assert.Contains(note, ReportText.Build(oneBucket, []));
        Assert.DoesNotContain("fits one bucket", ReportText.Build(c with { Modes = [c.Modes[0], c.Modes[1], Ddp(5)] }, []));
    }

    [Fact]
    public void The_default_compare_cuts_a_gradient_that_fits_one_bucket()
    {
        const long small = 11_660; // resnet18 width 2: 45.5 KB of gradient, under the 1 MB first bucket
        Assert.Equal(small * 4.0 / (1024 * 1024) / Comparison.DefaultBuckets, Comparison.BucketMbShowingOverlap(small, 25), 12);
        const long large = 21_797_672; // resnet34: 83 MB, already several buckets at 25 MB
        Assert.Equal(25, Comparison.BucketMbShowingOverlap(large, 25));
    }

    [Fact]
    public async Task A_quick_compare_runs_ddp_with_several_buckets_and_leaves_only_its_report()
    {
        string dir = Directory.CreateTempSubdirectory("engine-compare-buckets").FullName;
        try
        {
            string report = Path.Combine(dir, "report");
            // A process of its own: compare's ddp ranks are started as copies of the running program.
            var psi = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
            foreach (string a in new[] { typeof(Program).Assembly.Location, "compare", "--device", "cpu", "--width", "2", "--train-limit", "16", "--test-limit", "0",
                         "--batch-size", "4", "--epochs", "1", "--report", report })
            {
                psi.ArgumentList.Add(a);
            }
            using var p = System.Diagnostics.Process.Start(psi)!;
            Task<string> stdout = p.StandardOutput.ReadToEndAsync();
            Task<string> stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromMinutes(4))) p.Kill(entireProcessTree: true);
            p.WaitForExit();
            string err = await stderr;
            _ = await stdout;
            Assert.True(p.ExitCode == 0, err);
            Match buckets = Regex.Match(err, @"\[rank 0\] ddp: (\d+) gradient bucket\(s\)");
            Assert.True(buckets.Success, err);
            Assert.True(int.Parse(buckets.Groups[1].Value, CultureInfo.InvariantCulture) > 1, buckets.Value);
            Assert.DoesNotContain("fits one bucket, so", File.ReadAllText(Path.Combine(report, ReportWriter.Markdown)));
            Assert.Empty(Directory.GetDirectories(Path.GetTempPath(), $"engine-compare-traces-{p.Id}-*"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Devices_describes_a_cuda_device_by_driver_capability_and_ptx_isa()
    {
        string line = Commands.DevicesCommand.CudaDetails(13, 0, 9, 0, 8, 8, 132);
        Assert.Equal("driver CUDA 13.0  compute capability 9.0 (sm_90)  132 SMs  PTX ISA 8.8", line);
        Assert.Contains("none: ILGPU 1.5.3 supports no ISA", Commands.DevicesCommand.CudaDetails(11, 0, 9, 0, null, null, 1), StringComparison.Ordinal);
    }

    [Fact]
    public void Devices_shows_the_hosts_memory_for_the_cpu()
    {
        var (code, stdout, _) = Cli.Run("devices");
        Assert.Equal(0, code);
        Match cpu = Regex.Match(stdout, @"^cpu .* memory ([0-9.]+) GiB", RegexOptions.Multiline);
        Assert.True(cpu.Success, stdout);
        string memTotal = File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
        double expectedGiB = long.Parse(Regex.Match(memTotal, @"\d+").Value, CultureInfo.InvariantCulture) / (1024.0 * 1024);
        Assert.Equal(expectedGiB, double.Parse(cpu.Groups[1].Value, CultureInfo.InvariantCulture), 0.05);
    }
}
