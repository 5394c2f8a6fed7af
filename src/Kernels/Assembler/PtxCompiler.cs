using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.IR;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels.Assembler;

/// <summary>
/// Compiles a kernel to PTX with no GPU present, as ILGPU's CUDA accelerator does at launch: the same
/// context settings as <see cref="Device.CreateContext"/>, the target architecture and PTX ISA the driver
/// would get, and SpecializedValue parameters replaced by the values the launcher passes under the CUDA
/// tuning (ILGPU's specialisation cache wraps the kernel in a launcher method that calls it with those
/// constants; this does the same through ILGPU's public IR API).
/// </summary>
public sealed class PtxCompiler : IDisposable
{
    private readonly Context _context;

    public PtxCompiler()
    {
        _context = Context.Create(builder => builder.Optimize(OptimizationLevel.O1).AllAccelerators().EnableAlgorithms());
    }

    /// <summary>The PTX of <paramref name="kernel"/> for <paramref name="architecture"/> at <paramref name="isa"/>, specialised for <paramref name="tuning"/>.</summary>
    public string Compile(KernelEntry kernel, CudaArchitecture architecture, CudaInstructionSet isa, KernelTuning tuning)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var entry = kernel.ImplicitlyGrouped
            ? EntryPointDescription.FromImplicitlyGroupedKernel(kernel.Method)
            : EntryPointDescription.FromExplicitlyGroupedKernel(kernel.Method);
        using var backend = new PTXBackend(_context, new CudaCapabilityContext(architecture), architecture, isa, null);
        CompiledKernel compiled;
        lock (_context)
        {
            var bounds = kernel.Bounds(tuning);
            compiled = entry.HasSpecializedParameters
                ? CompileSpecialized(backend, entry, kernel.Specialization(tuning), bounds)
                : backend.Compile(entry, bounds);
        }
        return ((PTXCompiledKernel)compiled).PTXAssembly;
    }

    /// <summary>A launcher method that calls the kernel with <paramref name="values"/> in place of its SpecializedValue parameters.</summary>
    private static CompiledKernel CompileSpecialized(PTXBackend backend, EntryPointDescription entry, object[] values, KernelSpecialization bounds)
    {
        Method kernelMethod = backend.PreCompileKernelMethod(entry);
        using IRContext target = kernelMethod.ExtractToContext(out Method kernel);
        Method wrapper = target.Declare(new MethodDeclaration(MethodHandle.Create("LauncherWrapper"), target.VoidType), out _);
        kernel.AddFlags(MethodFlags.Inline);
        using (var builder = wrapper.CreateBuilder())
        {
            var location = wrapper.Location;
            var block = builder.EntryBlockBuilder;
            var call = block.CreateCall(location, kernel);
            var specialized = entry.Parameters.SpecializedParameters;
            int offset = entry.KernelIndexParameterOffset;
            for (int i = 0, next = 0; i < kernel.NumParameters; i++)
            {
                var parameter = kernel.Parameters[i];
                // Every parameter stays in the signature (ILGPU's argument mapping expects them all).
                var added = builder.AddParameter(parameter.Type, parameter.Name);
                if (next < specialized.Length && specialized[next].Index == i - offset)
                {
                    call.Add(block.CreateObjectValue(location, values[next]));
                    next++;
                }
                else
                {
                    call.Add(added);
                }
            }
            call.Seal();
            block.CreateReturn(location);
            builder.Complete();
        }
        target.Optimize();
        return backend.Compile(wrapper, entry, bounds);
    }

    public void Dispose() => _context.Dispose();
}
