using System.Diagnostics;

namespace Engine.Kernels.Assembler;

/// <summary>
/// NVIDIA's offline tools: ptxas (PTX to SASS, the same assembler the driver runs at kernel load) and
/// nvdisasm (prints the SASS; cuobjdump -sass prints the same but takes a minute where nvdisasm takes a second). No GPU is needed. Looked for in ENGINE_CUDA_TOOLS, an installed toolkit
/// (CUDA_HOME, CUDA_PATH, PATH, /usr/local/cuda/bin), and the folder tools/cuda-tools.sh unpacks them to.
/// </summary>
public sealed record CudaTools(string Ptxas, string Nvdisasm)
{
    /// <summary>What a user should do when the tools are missing.</summary>
    public const string HowToGet =
        "NVIDIA's ptxas and nvdisasm were not found. Install a CUDA toolkit (set CUDA_HOME), or on Debian/Ubuntu run " +
        "`bash tools/cuda-tools.sh` (downloads the nvidia-cuda-toolkit package and unpacks only ptxas, cuobjdump and nvdisasm; " +
        "root for apt), or point ENGINE_CUDA_TOOLS at a folder holding both.";

    /// <summary>The folders searched, in order.</summary>
    public static IEnumerable<string> SearchFolders()
    {
        foreach (string variable in new[] { "ENGINE_CUDA_TOOLS" })
        {
            if (Environment.GetEnvironmentVariable(variable) is { Length: > 0 } dir) yield return dir;
        }
        foreach (string variable in new[] { "CUDA_HOME", "CUDA_PATH" })
        {
            if (Environment.GetEnvironmentVariable(variable) is { Length: > 0 } dir) yield return Path.Combine(dir, "bin");
        }
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            yield return dir;
        }
        yield return "/usr/local/cuda/bin";
        string cache = Environment.GetEnvironmentVariable("CUDA_TOOLS_DIR") is { Length: > 0 } c ? c : "/tmp/cuda-tools";
        yield return Path.Combine(cache, "usr", "bin");
    }

    /// <summary>The first folder holding both tools, or null.</summary>
    public static CudaTools? Find()
    {
        foreach (string dir in SearchFolders())
        {
            string ptxas = Path.Combine(dir, "ptxas"), nvdisasm = Path.Combine(dir, "nvdisasm");
            if (File.Exists(ptxas) && File.Exists(nvdisasm)) return new CudaTools(ptxas, nvdisasm);
        }
        return null;
    }

    /// <summary>The tools, or an exception whose message says how to get them.</summary>
    public static CudaTools Require() => Find() ?? throw new FileNotFoundException(HowToGet);

    /// <summary>The version line of ptxas ("release 11.8, V11.8.89").</summary>
    public string Version()
    {
        string text = Run(Ptxas, ["--version"], Path.GetTempPath(), out _);
        return text.Split('\n').FirstOrDefault(l => l.Contains("release", StringComparison.Ordinal))?.Trim() ?? text.Trim();
    }

    /// <summary>Runs a tool; returns standard output, and the exit code and standard error through <paramref name="error"/>.</summary>
    internal static string Run(string file, IEnumerable<string> arguments, string workingDirectory, out (int ExitCode, string Error) error)
    {
        var start = new ProcessStartInfo(file)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in arguments) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {file}");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        error = (process.ExitCode, stderr.Result);
        return stdout;
    }
}
