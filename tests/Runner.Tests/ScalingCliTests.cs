using System.Globalization;
using System.Text;

namespace Engine.Runner.Tests;

/// <summary><c>engine model</c>: the seed check and <c>--from</c> a comparison's JSON.</summary>
[Collection("console")]
public class ScalingCliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => Cli.Run(args);

    private static string[] Rows(string stdout, string mode) => stdout.Split('\n').Where(l => l.StartsWith($"| {mode} ", StringComparison.Ordinal)).ToArray();

    [Fact]
    public void Seed_check_prints_the_three_rows_with_the_seeds_values_and_errors()
    {
        var (code, stdout, stderr) = Run("model", "--seed-check");
        Assert.True(code == 0, stderr);
        string single = Assert.Single(Rows(stdout, "Single"));
        string dp = Assert.Single(Rows(stdout, "DP    "));
        string ddp = Assert.Single(Rows(stdout, "DDP   "));
        Assert.Contains("6.302", single);
        Assert.Contains("12.460", dp);
        Assert.Contains("3.282", ddp);
        foreach (string row in new[] { single, dp, ddp }) Assert.Matches(@"[+-]?\d+\.\d%", row);
        Assert.Contains("Assumptions:", stdout);
        Assert.Contains("launch", stdout);
        Assert.Contains("21,289,802", stdout);
    }

    [Fact]
    public void Without_an_input_it_says_what_to_give()
    {
        var (code, _, err) = Run("model");
        Assert.Equal(2, code);
        Assert.Contains("--single-epoch-seconds", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void A_given_epoch_prints_the_three_modes()
    {
        var (code, stdout, stderr) = Run("model", "--single-epoch-seconds", "6", "--devices", "4", "--link", "nvlink", "--model", "resnet18");
        Assert.True(code == 0, stderr);
        Assert.Single(Rows(stdout, "Single"));
        Assert.Single(Rows(stdout, "DP    "));
        Assert.Single(Rows(stdout, "DDP   "));
        Assert.Contains("peer-to-peer", stdout);
        Assert.Contains("11,181,642", stdout);
    }

    private static string Phase(string name, double ms, long bytes = 0)
        => string.Format(CultureInfo.InvariantCulture, "\"{0}\": {{ \"seconds_per_step\": {1}, \"bytes_per_step\": {2} }}", name, ms / 1000, bytes);

    private static string Mode(string mode, int devices, bool shared, double stepMs, string phases, double hiddenMs = 0, string extraConfig = "")
        => string.Format(CultureInfo.InvariantCulture, """
        {{ "mode": "{0}", "devices": {1}, "mean_epoch_seconds": 1.5, "speedup_vs_single": null, "scaling_efficiency": null,
          "run": {{ "config": {{ "mode": "{0}", "model": "resnet18", "stem": "imagenet", "width": 4, "batch_size": 32 {6} }},
                   "device": "cpu", "dataset": "synthetic", "parameters": 0,
                   "epochs": [ {{ "epoch": 1, "seconds": 1.5, "train_loss": 2.3, "train_accuracy": 0.1, "test_accuracy": null, "steps": 4, "images_per_second": 100 }} ],
                   "breakdown": {{ "mode": "{0}", "devices": {1}, "shared": {2}, "steps": 4, "step_seconds": {3}, "phases": {{ {4} }}, "grad_sync_hidden_seconds_per_step": {5} }} }} }}
        """, mode, devices, shared ? "true" : "false", stepMs / 1000, phases, hiddenMs / 1000, extraConfig);

    [Fact]
    public void From_a_comparison_prints_predicted_and_measured_per_phase()
    {
        // A small comparison written by hand: single 100 ms steps; dp and ddp on two separate devices.
        string single = Mode("single", 1, false, 100, string.Join(", ", Phase("data", 5), Phase("h2d", 1, 100_000), Phase("forward", 30), Phase("loss", 1), Phase("backward", 60), Phase("optimizer", 3)));
        string dp = Mode("dp", 2, false, 180, string.Join(", ", Phase("data", 10), Phase("h2d", 2), Phase("scatter", 4, 400_000), Phase("replicate", 20, 1_000_000),
            Phase("forward", 40), Phase("gather", 1), Phase("loss", 2), Phase("backward", 70), Phase("grad_sync", 25, 1_000_000), Phase("optimizer", 6)));
        string ddp = Mode("ddp", 2, false, 110, string.Join(", ", Phase("data", 5), Phase("h2d", 1), Phase("replicate", 1, 1000), Phase("forward", 31),
            Phase("loss", 1), Phase("backward", 62), Phase("grad_sync", 6, 1_000_000), Phase("optimizer", 3)), hiddenMs: 12, extraConfig: ", \"bucket_mb\": 0.1");
        var (code, stdout, stderr) = RunFrom($"{{ \"modes\": [ {single}, {dp}, {ddp} ], \"explanation\": [] }}", "--bandwidth-gbs", "2");
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("DP over 2 devices", stdout);
        Assert.Contains("DDP over 2 devices", stdout);
        string[] lines = stdout.Split('\n');
        // dp's and ddp's tables each have one row per engine phase, with predicted and measured columns.
        Assert.Equal(2, lines.Count(l => l.StartsWith("| Phase ", StringComparison.Ordinal) && l.Contains("Predicted ms") && l.Contains("Measured ms")));
        foreach (string phase in new[] { "replicate", "forward", "backward", "grad_sync", "step" })
        {
            Assert.Equal(2, lines.Count(l => l.StartsWith($"| {phase} ", StringComparison.Ordinal)));
        }
        // Each rank computes single's forward (30 ms, from the input) and ddp measured 31 ms.
        string[] forward = lines.Where(l => l.StartsWith("| forward ", StringComparison.Ordinal)).ToArray();
        Assert.All(forward, l => Assert.Contains("30.000", l));
        Assert.Contains("31.000", forward[1]);
        Assert.Contains("-3.2%", forward[1]);
    }

    /// <summary>Runs <c>engine model --from</c> on <paramref name="json"/> written to a temporary file.</summary>
    private static (int Code, string Out, string Err) RunFrom(string json, params string[] options)
    {
        string path = Path.Combine(Path.GetTempPath(), $"scaling-from-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json, Encoding.UTF8);
        try
        {
            return Run(["model", "--from", path, .. options]);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void From_an_emulated_comparison_predicts_ddps_sync_from_its_links_rate()
    {
        // A two-node comparison over 8mbit (ddp_link), resnet18 width 4: 45,102 parameters = 180,408 gradient bytes.
        string single = Mode("single", 1, true, 100, string.Join(", ", Phase("data", 5), Phase("h2d", 1, 100_000), Phase("forward", 30), Phase("loss", 1), Phase("backward", 60), Phase("optimizer", 3)));
        string ddp = Mode("ddp", 2, true, 300, string.Join(", ", Phase("data", 5), Phase("h2d", 1), Phase("replicate", 1, 1000), Phase("forward", 60),
            Phase("loss", 1), Phase("backward", 120), Phase("grad_sync", 100, 180_408), Phase("optimizer", 3)), hiddenMs: 0, extraConfig: ", \"bucket_mb\": 0.05, \"no_overlap\": true");
        var (code, stdout, stderr) = RunFrom($"{{ \"modes\": [ {single}, {ddp} ], \"explanation\": [], \"ddp_link\": \"8mbit\" }}");
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("DDP's ranks over emulated link 8mbit (tbf)", stdout);
        string[] lines = stdout.Split('\n');
        double Predicted(string row) => double.Parse(lines.Single(l => l.StartsWith($"| {row} ", StringComparison.Ordinal)).Split('|')[2], CultureInfo.InvariantCulture);
        // Without overlap every bucket goes after backward, back to back: the link carries 180,408 bytes
        // each way at TCP's share of 1 MB/s (956.4 KB/s) after one 62.7 KB burst: 123.1 ms.
        Assert.Equal((180_408 - 64 * 1024 * 1448.0 / 1514) / 956.406, Predicted("grad_sync"), 1);
        Assert.Equal(0, Predicted("hidden comm"));
        var (seedCode, _, seedErr) = Run("model", "--seed-check", "--link", "8mbit");
        Assert.Equal(2, seedCode);
        Assert.Contains("does not apply", seedErr);
    }

    [Fact]
    public void From_a_missing_file_names_it()
    {
        var (code, _, err) = Run("model", "--from", "/no/such/compare.json");
        Assert.Equal(2, code);
        Assert.Contains("/no/such/compare.json", err);
    }
}
