using System.CommandLine;
using Engine.Kernels;
using ILGPU;
using ILGPU.Runtime;
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
                Console.WriteLine($"{spec,-8} {d.Name}  memory {d.MemorySize / (1024.0 * 1024 * 1024):F1} GiB  max group {d.MaxNumThreadsPerGroup}");
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
}
