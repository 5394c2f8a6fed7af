using System.Runtime.CompilerServices;
using Engine.Tests;

namespace Engine.Kernels.Tests;

/// <summary>
/// With the simulated GPU as the test device, the process enters the simulator's working folder as soon as this
/// assembly loads: any test that initialises the CUDA driver (an ILGPU context with every accelerator, to compile PTX)
/// would otherwise make GPGPU-Sim look for ./gpgpusim.config in whatever folder the test host started in, and end the
/// process when it is not there, whichever test happens to run first.
/// </summary>
internal static class SimulatorFolder
{
    [ModuleInitializer]
    internal static void Enter()
    {
        if (TestDevice.IsSimulated) SimulatedGpu.EnterWorkingFolder();
    }
}
