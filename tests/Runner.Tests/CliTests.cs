namespace Engine.Runner.Tests;

/// <summary>The CLI turns user errors into one line on stderr and exit code 2 (no stack trace).</summary>
[Collection("console")]
public class CliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => Cli.Run(args);

    [Theory]
    [InlineData("--model", "resnet50", "resnet50")]
    [InlineData("--device", "gpu7", "gpu7")]
    [InlineData("--dataset", "imagenet", "imagenet")]
    [InlineData("--init", "/no/such.safetensors", "/no/such.safetensors")]
    public void Bad_option_values_exit_2_with_a_one_line_error(string option, string value, string mentioned)
    {
        string[] args = option == "--device"
            ? new[] { "train", option, value, "--epochs", "1" }
            : new[] { "train", "--device", "cpu", option, value, "--epochs", "1" };
        var (code, _, err) = Run(args);
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", err);
        Assert.Contains(mentioned, err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void Missing_data_path_names_the_path()
    {
        var (code, _, err) = Run("train", "--device", "cpu", "--dataset", "cifar10", "--data", "/no/such/cifar", "--epochs", "1");
        Assert.Equal(2, code);
        Assert.Contains("/no/such/cifar", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void Train_prints_one_line_per_epoch_on_stdout()
    {
        var (code, stdout, stderr) = Run("train", "--device", "cpu", "--model", "resnet18", "--width", "4", "--train-limit", "32", "--test-limit", "16",
            "--batch-size", "16", "--epochs", "2");
        Assert.True(code == 0, stderr);
        string[] lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Count(l => l.StartsWith("epoch ", StringComparison.Ordinal)));
        Assert.Contains("test acc", lines[0]);
        Assert.Contains("synthetic", stderr);
    }
}
