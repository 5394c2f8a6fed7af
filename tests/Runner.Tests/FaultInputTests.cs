using Engine.Runner.Commands;

namespace Engine.Runner.Tests;

/// <summary>
/// Bad input as a new user types it: every mistake is one line on stderr and exit code 2, found
/// before any data is loaded or device set up (the "data:" progress line never appears), naming the
/// flag, and leaving no file behind.
/// </summary>
[Collection("console")]
public sealed class FaultInputTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("engine-fault-input").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string[] Tiny = ["--device", "cpu", "--model", "resnet18", "--width", "2", "--train-limit", "8", "--test-limit", "0", "--batch-size", "4", "--epochs", "1"];

    /// <summary><see cref="Tiny"/> with <paramref name="flag"/> set to <paramref name="value"/> (replacing Tiny's own).</summary>
    private static string[] TinyWith(string flag, string value)
    {
        var args = new List<string>();
        for (int i = 0; i < Tiny.Length; i += 2)
        {
            if (Tiny[i] != flag) args.AddRange([Tiny[i], Tiny[i + 1]]);
        }
        return [.. args, flag, value];
    }

    private static (int Code, string Out, string Err) Run(params string[] args) => Cli.Run(args);

    /// <summary>Exit 2, one "error:" line naming <paramref name="mentioned"/>, no stack trace, and no work started.</summary>
    private static void AssertRefusedUpFront((int Code, string Out, string Err) r, params string[] mentioned)
    {
        Assert.True(r.Code == 2, $"exit {r.Code}\n{r.Err}");
        Assert.StartsWith("error: ", r.Err);
        foreach (string m in mentioned) Assert.Contains(m, r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("Unhandled", r.Err);
        Assert.DoesNotContain("data:", r.Err);
        Assert.DoesNotContain("== compare", r.Err);
    }

    /// <summary>A folder that refuses new files even to root: sysfs, or a folder without write permission for anyone else.</summary>
    private string ReadOnlyFolder()
    {
        if (Environment.IsPrivilegedProcess || !OperatingSystem.IsLinux()) return "/sys";
        string folder = Path.Combine(_dir, "read-only");
        Directory.CreateDirectory(folder);
        File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        return folder;
    }

    [Fact]
    public void Output_naming_an_existing_folder_is_refused_before_training()
        => AssertRefusedUpFront(Run(["train", .. Tiny, "--output", _dir]), "--output", "is a folder");

    [Fact]
    public void Compare_report_naming_an_existing_file_is_refused_before_the_first_run()
    {
        string file = Path.Combine(_dir, "report.md");
        File.WriteAllText(file, "mine");
        AssertRefusedUpFront(Run(["compare", .. Tiny, "--report", file]), "--report", "is a file");
        Assert.Equal("mine", File.ReadAllText(file));
    }

    [Theory]
    [InlineData("train", "--save", "model.safetensors")]
    [InlineData("train", "--output", "run.json")]
    [InlineData("train", "--trace", "trace.json")]
    [InlineData("compare", "--output", "compare.json")]
    [InlineData("compare", "--report", "report")]
    public void Outputs_into_a_read_only_folder_are_refused_before_the_work_and_leave_nothing(string command, string flag, string name)
    {
        string folder = ReadOnlyFolder();
        string path = Path.Combine(folder, name);
        string[] before = Directory.GetFileSystemEntries(folder);
        AssertRefusedUpFront(Run([command, .. Tiny, flag, path]), flag, folder);
        Assert.Equal(before, Directory.GetFileSystemEntries(folder));
    }

    [Fact]
    public void A_compare_that_fails_midway_leaves_neither_its_trace_folder_nor_a_report_folder()
    {
        string report = Path.Combine(_dir, "report");
        string traces = $"engine-compare-traces-{Environment.ProcessId}-";
        // 8 images cannot fill a batch of 16: the first mode fails after the trace folder exists.
        var (code, _, err) = Run(["compare", "--device", "cpu", "--width", "2", "--train-limit", "8", "--test-limit", "0", "--batch-size", "16", "--epochs", "1", "--report", report]);
        Assert.True(code == 2, err);
        Assert.Contains("--batch-size 16", err);
        Assert.DoesNotContain("   at ", err);
        Assert.False(Directory.Exists(report), "the report folder of a failed compare was left behind");
        Assert.Empty(Directory.GetDirectories(Path.GetTempPath(), traces + "*"));
    }

    [Fact]
    public void Data_without_dataset_reads_the_cifar_folder_it_names()
    {
        string cifar = Path.Combine(_dir, "cifar-10-batches-bin");
        Directory.CreateDirectory(cifar);
        var rng = new Random(3);
        foreach (string file in new[] { "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin" })
        {
            var bytes = new byte[4 * 3073];
            rng.NextBytes(bytes);
            for (int r = 0; r < 4; r++) bytes[r * 3073] = (byte)rng.Next(10);
            File.WriteAllBytes(Path.Combine(cifar, file), bytes);
        }
        var (code, _, err) = Run(["train", .. Tiny, "--data", _dir]);
        Assert.True(code == 0, err);
        Assert.Contains("cifar10-train, 8 train", err);
        Assert.DoesNotContain("synthetic", err);
    }

    [Fact]
    public void Data_without_dataset_that_holds_no_known_format_is_refused()
    {
        File.WriteAllText(Path.Combine(_dir, "notes.txt"), "not images");
        AssertRefusedUpFront(Run(["train", .. Tiny, "--data", _dir]), _dir, "--dataset");
        AssertRefusedUpFront(Run(["train", .. Tiny, "--dataset", "synthetic", "--data", _dir]), "--data", "synthetic");
    }

    [Fact]
    public void Compare_offers_no_option_it_would_ignore()
    {
        AssertRefusedUpFront(Run(["compare", .. Tiny, "--mode", "dp"]), "--mode");
        string help = Run("compare", "--help").Out;
        var offered = OptionEntries(help).Select(e => e.Split(' ')[0]).ToList();
        Assert.Contains("--report", offered);
        foreach (string ignored in new[] { "--mode", "--save", "--trace" })
        {
            Assert.DoesNotContain(ignored, offered);
        }
    }

    [Theory]
    [InlineData("train", "--epochs", "1")]
    [InlineData("train", "--mode", "single")]
    [InlineData("train", "--mode=dp")]
    [InlineData("devices")]
    public void Launch_of_a_single_process_command_is_an_error(params string[] child)
    {
        var r = Run(["launch", "--nproc-per-node", "2", "--", .. child]);
        AssertRefusedUpFront(r, "train --mode ddp");
        Assert.DoesNotContain("started rank", r.Err);
    }

    [Fact]
    public void An_unknown_mode_is_refused_with_the_list_of_modes()
        => AssertRefusedUpFront(Run(["train", .. Tiny, "--mode", "zero4"]), "--mode", "zero4", "fsdp");

    [Theory]
    [InlineData("zero2", "--accumulate", "2")]
    [InlineData("fsdp", "--accumulate", "2")]
    [InlineData("dp", "--accumulate", "2")]
    [InlineData("zero2", "--no-overlap", null)]
    [InlineData("fsdp", "--no-overlap", null)]
    public void An_option_the_mode_cannot_honour_is_refused_up_front(string mode, string flag, string? value)
        => AssertRefusedUpFront(Run(["train", .. Tiny, "--mode", mode, flag, .. value is null ? Array.Empty<string>() : [value]]), flag, mode);

    [Fact]
    public void Compare_refuses_an_unknown_mode_before_running_any()
        => AssertRefusedUpFront(Run(["compare", .. Tiny, "--modes", "single,bogus"]), "bogus");

    [Theory]
    [InlineData("--nproc", "0")]
    [InlineData("--timeout", "nan")]
    [InlineData("--slice-kb", "0")]
    public void Bench_allreduce_with_no_ranks_or_no_time_is_an_error(string flag, string value)
        => AssertRefusedUpFront(Run("bench", "allreduce", flag, value), flag);

    [Theory]
    [InlineData("--lr", "nan")]
    [InlineData("--lr", "-0.1")]
    [InlineData("--momentum", "nan")]
    [InlineData("--weight-decay", "inf")]
    [InlineData("--bucket-mb", "0")]
    public void Numeric_flags_are_checked_before_any_set_up_naming_the_flag(string flag, string value)
        => AssertRefusedUpFront(Run(["train", .. TinyWith(flag, value)]), flag);

    [Theory]
    [InlineData("--batch-size", "1e9", "expected a whole number")]
    [InlineData("--epochs", "two", "expected a whole number")]
    [InlineData("--lr", "fast", "expected a number")]
    [InlineData("--shuffle", "maybe", "expected true or false")]
    public void Parse_errors_say_in_words_what_was_expected(string flag, string value, string expected)
    {
        var r = Run(["train", .. TinyWith(flag, value)]);
        AssertRefusedUpFront(r, flag, expected, $"'{value}'");
        Assert.DoesNotContain("System.", r.Err);
    }

    [Fact]
    public void Help_shows_a_default_for_every_option_of_every_command()
    {
        var missing = new List<string>();
        foreach (string[] path in Leaves(Program.BuildRoot(), []))
        {
            var (code, help, _) = Run([.. path, "--help"]);
            Assert.Equal(0, code);
            foreach (string entry in OptionEntries(help))
            {
                if (entry.StartsWith("-?", StringComparison.Ordinal) || entry.Contains("(REQUIRED)", StringComparison.Ordinal)) continue;
                if (!entry.Contains("[default: ", StringComparison.Ordinal)) missing.Add($"{string.Join(' ', path)}: {entry}");
            }
        }
        Assert.True(missing.Count == 0, "options whose help shows no default:\n" + string.Join('\n', missing));
    }

    [Fact]
    public void Unexpected_errors_are_one_line_with_the_trace_only_under_engine_debug()
    {
        TextWriter oldErr = Console.Error;
        var quiet = new StringWriter();
        var debug = new StringWriter();
        try
        {
            var bug = new InvalidOperationException("the list changed while it was read");
            Console.SetError(quiet);
            Assert.Equal(2, CliErrors.ReportUnexpected(bug, debug: false));
            Console.SetError(debug);
            try
            {
                throw bug;
            }
            catch (InvalidOperationException thrown)
            {
                Assert.Equal(2, CliErrors.ReportUnexpected(thrown, debug: true));
            }
        }
        finally
        {
            Console.SetError(oldErr);
        }
        string[] lines = quiet.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains("the list changed while it was read", lines[0]);
        Assert.Contains(CliErrors.DebugVariable + "=1", lines[0]);
        Assert.Contains("   at ", debug.ToString());
    }

    private static IEnumerable<string[]> Leaves(System.CommandLine.Command command, string[] path)
    {
        if (command.Options.Count > 0 && path.Length > 0) yield return path;
        foreach (var sub in command.Subcommands)
        {
            foreach (string[] leaf in Leaves(sub, [.. path, sub.Name])) yield return leaf;
        }
    }

    /// <summary>The option entries of a help text, wrapped lines joined.</summary>
    private static List<string> OptionEntries(string help)
    {
        var entries = new List<string>();
        bool inOptions = false;
        foreach (string raw in help.Split('\n'))
        {
            string line = raw.TrimEnd('\r');
            if (line.StartsWith("Options:", StringComparison.Ordinal)) { inOptions = true; continue; }
            if (!inOptions) continue;
            if (line.Length == 0 || !line.StartsWith(' ')) { inOptions = line.Length == 0 && inOptions; if (line.Length > 0) break; continue; }
            if (line.StartsWith("  -", StringComparison.Ordinal)) entries.Add(line.Trim());
            else if (entries.Count > 0) entries[^1] += " " + line.Trim();
        }
        return entries;
    }
}
