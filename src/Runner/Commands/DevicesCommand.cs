using System.CommandLine;
using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Commands;

/// <summary><c>engine devices</c>: what ILGPU sees on this machine.</summary>
internal static class DevicesCommand
{
    public static Command Create()
    {
        var command = new Command("devices", "List the accelerators ILGPU sees (CUDA GPUs and the CPU emulator).");
        command.SetAction(_ =>
        {
            using Context context = Device.CreateContext();
            int i = 0;
            foreach (var d in context.Devices)
            {
                string spec = d.AcceleratorType == AcceleratorType.Cuda ? $"cuda:{i++}" : d.AcceleratorType.ToString().ToLowerInvariant();
                // ILGPU gives the CPU accelerator long.MaxValue bytes; what it can really use is the host's memory.
                string memory = d.AcceleratorType == AcceleratorType.CPU
                    ? $"{HostMemoryBytes() / (1024.0 * 1024 * 1024):F1} GiB (host memory)"
                    : $"{d.MemorySize / (1024.0 * 1024 * 1024):F1} GiB";
                Console.WriteLine($"{spec,-8} {d.Name}  memory {memory}  max group {d.MaxNumThreadsPerGroup}");
                if (d is CudaDevice cuda)
                {
                    Console.WriteLine("         " + CudaDetails(cuda.DriverVersion.Major, cuda.DriverVersion.Minor, cuda.Architecture?.Major, cuda.Architecture?.Minor,
                        cuda.InstructionSet?.Major, cuda.InstructionSet?.Minor, cuda.NumMultiprocessors));
                }
            }
            Console.WriteLine($"nvtx: {Nvtx.Source}");
            if (Device.CudaCount(context) == 0)
            {
                Console.WriteLine("no CUDA device: --device auto will use the CPU accelerator (ILGPU's GPU emulator, slow).");
            }
            return 0;
        });
        return command;
    }

    /// <summary>
    /// What decides how a CUDA device runs the engine's kernels: the driver's CUDA version, the compute capability,
    /// and the PTX ISA ILGPU will write for that driver (none: ILGPU cannot target this driver or card).
    /// </summary>
    internal static string CudaDetails(int driverMajor, int driverMinor, int? ccMajor, int? ccMinor, int? isaMajor, int? isaMinor, int multiprocessors) =>
        $"driver CUDA {driverMajor}.{driverMinor}  compute capability {(ccMajor is null ? "unknown" : $"{ccMajor}.{ccMinor} (sm_{ccMajor}{ccMinor})")}  " +
        $"{multiprocessors} SMs  PTX ISA {(isaMajor is null ? "none: ILGPU 1.5.3 supports no ISA for this driver/card" : $"{isaMajor}.{isaMinor}")}";

    /// <summary>The machine's memory: MemTotal of /proc/meminfo on Linux, else what the runtime reports as available.</summary>
    internal static long HostMemoryBytes()
    {
        try
        {
            string? line = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
            string[]? parts = line?.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts is [_, var kb, "kB"] && long.TryParse(kb, out long value)) return value * 1024;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }
}
