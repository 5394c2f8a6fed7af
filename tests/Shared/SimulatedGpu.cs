using System.Runtime.InteropServices;

namespace Engine.Tests;

/// <summary>
/// The simulated CUDA GPU of ../shared/gpusim (GPGPU-Sim behind a libcuda.so.1), as tests see it. Sourcing its
/// env.sh puts the driver library on LD_LIBRARY_PATH and names the chosen configuration's folder in
/// GPUSIM_CONFIG_DIR. GPGPU-Sim reads ./gpgpusim.config from the current directory when the driver is first
/// initialised, exits the whole process if it is missing, and writes small files (PTX, ptxas output) beside it
/// on every module load: so a process that uses it must run from a folder holding the configuration for as long
/// as it launches kernels.
/// </summary>
public static class SimulatedGpu
{
    public const string ConfigDirectoryVariable = "GPUSIM_CONFIG_DIR";
    public const string ConfigFile = "gpgpusim.config";

    /// <summary>The configuration folder env.sh chose, or null when the simulator is not set up in this process's environment.</summary>
    public static string? ConfigDirectory
    {
        get
        {
            string? dir = Environment.GetEnvironmentVariable(ConfigDirectoryVariable);
            return string.IsNullOrEmpty(dir) ? null : dir;
        }
    }

    public static bool IsSetUp => NotSetUpReason is null;

    /// <summary>Why a test that needs the simulator cannot run here, or null when it can.</summary>
    public static string? NotSetUpReason
    {
        get
        {
            string? dir = ConfigDirectory;
            if (dir is null)
            {
                return $"the simulated GPU is not set up: {ConfigDirectoryVariable} is unset (source ../shared/gpusim/env.sh functional first, as .ci/run does)";
            }
            return File.Exists(Path.Combine(dir, ConfigFile))
                ? null
                : $"the simulated GPU is not set up: {ConfigDirectoryVariable}={dir} holds no {ConfigFile}";
        }
    }

    /// <summary>
    /// True when the configuration runs GPGPU-Sim's functional mode (<c>-gpgpu_ptx_sim_mode 1</c>, or
    /// PTX_SIM_MODE_FUNC=1): instructions execute but no cycles pass, so events recorded around a launch are 0 ms
    /// apart. The timing configurations (rtx3070, h100) count simulated cycles.
    /// </summary>
    public static bool IsFunctional
    {
        get
        {
            if (Environment.GetEnvironmentVariable("PTX_SIM_MODE_FUNC") is { Length: > 0 } mode)
            {
                return mode.Trim() == "1";
            }
            string? dir = ConfigDirectory;
            string config = dir is null ? "" : Path.Combine(dir, ConfigFile);
            return File.Exists(config) && File.ReadLines(config)
                .Select(line => line.Split('#', 2)[0].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
                .Any(words => words is ["-gpgpu_ptx_sim_mode", "1"]);
        }
    }

    /// <summary>The simulated core clock the configuration sets (the first of <c>-gpgpu_clock_domains</c>, in MHz), in Hz.</summary>
    /// <exception cref="InvalidOperationException">The simulator is not set up, or its configuration sets no clock.</exception>
    public static double CoreClockHz()
    {
        if (NotSetUpReason is { } why) throw new InvalidOperationException(why);
        string config = Path.Combine(ConfigDirectory!, ConfigFile);
        string[]? words = File.ReadLines(config)
            .Select(line => line.Split('#', 2)[0].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
            .LastOrDefault(w => w is ["-gpgpu_clock_domains", _]);
        return words is null
            ? throw new InvalidOperationException($"{config} sets no -gpgpu_clock_domains")
            : double.Parse(words[1].Split(':')[0], System.Globalization.CultureInfo.InvariantCulture) * 1e6;
    }

    private static readonly Lazy<string> ProcessFolder = new(() =>
    {
        string folder = PrepareFolder();
        Directory.SetCurrentDirectory(folder);
        SendStdoutTo(folder + ".log");
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(folder, recursive: true);
            }
            catch (IOException)
            {
                // The simulator's files are small; a folder left in the temp directory harms nothing.
            }
        };
        return folder;
    });

    /// <summary>
    /// Makes this process run from a fresh folder holding the simulator's configuration (once per process), before
    /// the first CUDA context is created; returns the folder. Tests find their files by absolute paths
    /// (<see cref="AppContext.BaseDirectory"/>, temporary folders), so the move changes nothing else.
    /// </summary>
    /// <exception cref="InvalidOperationException">The simulator is not set up (the message says what is missing).</exception>
    public static string EnterWorkingFolder() => ProcessFolder.Value;

    /// <summary>
    /// GPGPU-Sim prints its configuration and several lines per launch on the process's stdout (tens of thousands of
    /// lines for the kernel tests), which the test logger would copy into the CI log; they go to this file instead
    /// (kept beside the working folder, for a failure's post-mortem). Test results travel to the runner over a socket.
    /// </summary>
    private static void SendStdoutTo(string path)
    {
        const int writeOnly = 0x1, create = 0x40, truncate = 0x200, stdout = 1;
        int fd = Open(path, writeOnly | create | truncate, Convert.ToInt32("644", 8));
        if (fd < 0 || Dup2(fd, stdout) < 0)
        {
            throw new IOException($"could not send the simulator's output to {path} (errno {Marshal.GetLastPInvokeError()})");
        }
        Close(fd);
    }

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mode);

    [DllImport("libc", EntryPoint = "dup2", SetLastError = true)]
    private static extern int Dup2(int from, int to);

    [DllImport("libc", EntryPoint = "close")]
    private static extern int Close(int fd);

    /// <summary>A new temporary folder with the configuration files copied in: the working directory for a simulated-GPU process.</summary>
    /// <exception cref="InvalidOperationException">The simulator is not set up (the message says what is missing).</exception>
    public static string PrepareFolder()
    {
        if (NotSetUpReason is { } why)
        {
            throw new InvalidOperationException(char.ToUpperInvariant(why[0]) + why[1..] + ".");
        }
        string folder = Directory.CreateTempSubdirectory("engine-gpusim-").FullName;
        foreach (string file in Directory.GetFiles(ConfigDirectory!))
        {
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        }
        return folder;
    }
}
