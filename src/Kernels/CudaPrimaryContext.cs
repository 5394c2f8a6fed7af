using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels;

/// <summary>
/// Moves an ILGPU CUDA accelerator into the device's primary context, the one the CUDA runtime, NCCL and every
/// other library use (cudaSetDevice makes it current). ILGPU 1.5.3 always creates a context of its own
/// (cuCtxCreate) and keeps it in <see cref="Accelerator.NativePtr"/>, binding it before its driver calls; buffers,
/// streams and modules then live there, and NCCL, which launches in the primary context, cannot use them.
/// <para>
/// Adopt: right after ILGPU builds the accelerator (nothing is allocated in its context yet; its default stream
/// is the null stream, which belongs to whatever context is current), retain the primary context, put it in
/// NativePtr (a protected setter, reached by reflection), make it current and destroy ILGPU's context.
/// Release: ILGPU's dispose frees its children and calls cuCtxDestroy on NativePtr, which a primary context
/// refuses; so, with the primary context current for the children, a throwaway created context takes
/// NativePtr's place, ILGPU destroys that, and the primary context is released. <c>ENGINE_CUDA_CONTEXT=own</c> keeps ILGPU's own context (a switch for a GPU
/// run that misbehaves; NCCL then cannot work on the engine's buffers).
/// </para>
/// </summary>
internal static partial class CudaPrimaryContext
{
    public const string Variable = "ENGINE_CUDA_CONTEXT";

    private const string Driver = "libcuda.so.1";

    private static readonly PropertyInfo NativePtr = typeof(Accelerator).GetProperty(nameof(Accelerator.NativePtr))
        ?? throw new MissingMemberException(nameof(Accelerator), nameof(Accelerator.NativePtr));

    /// <summary>Whether accelerators are moved into the primary context (the default) or keep ILGPU's own.</summary>
    public static bool Enabled =>
        !string.Equals(Environment.GetEnvironmentVariable(Variable)?.Trim(), "own", StringComparison.OrdinalIgnoreCase);

    /// <summary>Moves <paramref name="accelerator"/> into its device's primary context; returns the CUdevice to release later.</summary>
    public static int Adopt(CudaAccelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        Check(cuDeviceGet(out int device, accelerator.DeviceId), "cuDeviceGet");
        Check(cuDevicePrimaryCtxRetain(out IntPtr primary, device), "cuDevicePrimaryCtxRetain");
        IntPtr own = accelerator.NativePtr;
        NativePtr.SetValue(accelerator, primary);
        Check(cuCtxSetCurrent(primary), "cuCtxSetCurrent");
        Check(cuCtxDestroy(own), "cuCtxDestroy (ILGPU's own context)");
        return device;
    }

    /// <summary>Disposes <paramref name="accelerator"/> (adopted on CUdevice <paramref name="device"/>) and releases the primary context.</summary>
    public static void Dispose(CudaAccelerator accelerator, int device)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        IntPtr primary = accelerator.NativePtr;
        // ILGPU's dispose binds the accelerator (a no-op when it is already this thread's current one), frees
        // its buffers, streams and modules, then destroys NativePtr. Bind it now, with the primary context, so
        // the children are freed in the context they live in; then hand ILGPU a throwaway context to destroy.
        accelerator.Bind();
        Check(cuCtxCreate(out IntPtr throwaway, 0, device), "cuCtxCreate (for ILGPU to destroy)");
        Check(cuCtxSetCurrent(primary), "cuCtxSetCurrent");
        NativePtr.SetValue(accelerator, throwaway);
        try
        {
            accelerator.Dispose();
        }
        finally
        {
            Check(cuDevicePrimaryCtxRelease(device), "cuDevicePrimaryCtxRelease");
        }
    }

    /// <summary>The context current on the calling thread.</summary>
    public static IntPtr Current()
    {
        Check(cuCtxGetCurrent(out IntPtr context), "cuCtxGetCurrent");
        return context;
    }

    /// <summary>The context a device allocation belongs to (CU_POINTER_ATTRIBUTE_CONTEXT).</summary>
    public static IntPtr OfPointer(IntPtr devicePointer)
    {
        Check(cuPointerGetAttribute(out IntPtr context, 1, devicePointer), "cuPointerGetAttribute(CONTEXT)");
        return context;
    }

    /// <summary>The context of a stream (the null stream: the calling thread's current context).</summary>
    public static IntPtr OfStream(IntPtr stream)
    {
        Check(cuStreamGetCtx(stream, out IntPtr context), "cuStreamGetCtx");
        return context;
    }

    /// <summary>The device's primary context handle, without keeping a reference to it.</summary>
    public static IntPtr Primary(int ordinal)
    {
        Check(cuDeviceGet(out int device, ordinal), "cuDeviceGet");
        Check(cuDevicePrimaryCtxRetain(out IntPtr primary, device), "cuDevicePrimaryCtxRetain");
        Check(cuDevicePrimaryCtxRelease(device), "cuDevicePrimaryCtxRelease");
        return primary;
    }

    private static void Check(int result, string call)
    {
        if (result != 0)
        {
            throw new InvalidOperationException($"{call} failed with CUresult {result}; set {Variable}=own to keep ILGPU's own CUDA context.");
        }
    }

    // The driver calls, declared once for the engine (CudaContexts' queries use them too).
    [LibraryImport(Driver)] internal static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Driver)] internal static partial int cuDevicePrimaryCtxRetain(out IntPtr context, int device);
    [LibraryImport(Driver, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] internal static partial int cuDevicePrimaryCtxRelease(int device);
    [LibraryImport(Driver, EntryPoint = "cuCtxCreate_v2")] private static partial int cuCtxCreate(out IntPtr context, uint flags, int device);
    [LibraryImport(Driver, EntryPoint = "cuCtxDestroy_v2")] private static partial int cuCtxDestroy(IntPtr context);
    [LibraryImport(Driver)] private static partial int cuCtxSetCurrent(IntPtr context);
    [LibraryImport(Driver)] internal static partial int cuCtxGetCurrent(out IntPtr context);
    [LibraryImport(Driver)] internal static partial int cuPointerGetAttribute(out IntPtr data, int attribute, IntPtr pointer);
    [LibraryImport(Driver)] internal static partial int cuStreamGetCtx(IntPtr stream, out IntPtr context);
}

/// <summary>
/// Which CUDA context a thread, a stream or a device allocation is in, asked of the driver for diagnostics: each query
/// answers 0 when the driver does not (no driver, an invalid handle) instead of throwing, so a report can still print.
/// </summary>
public static class CudaContexts
{
    private const int PointerAttributeContext = 1; // CU_POINTER_ATTRIBUTE_CONTEXT

    /// <summary>The context current on the calling thread (0: none, or the driver did not answer).</summary>
    public static nint Current() => CudaPrimaryContext.cuCtxGetCurrent(out nint context) == 0 ? context : 0;

    /// <summary>The context a stream belongs to (0 when the driver did not answer).</summary>
    public static nint OfStream(nint stream) => CudaPrimaryContext.cuStreamGetCtx(stream, out nint context) == 0 ? context : 0;

    /// <summary>The context a device allocation belongs to (0 when the driver did not answer).</summary>
    public static nint OfPointer(nint pointer) => CudaPrimaryContext.cuPointerGetAttribute(out nint context, PointerAttributeContext, pointer) == 0 ? context : 0;

    /// <summary>CUDA device <paramref name="ordinal"/>'s primary context handle, without keeping a reference to it (0 when the driver did not answer).</summary>
    public static nint PrimaryOf(int ordinal)
    {
        if (CudaPrimaryContext.cuDeviceGet(out int device, ordinal) != 0 || CudaPrimaryContext.cuDevicePrimaryCtxRetain(out nint primary, device) != 0)
        {
            return 0;
        }
        _ = CudaPrimaryContext.cuDevicePrimaryCtxRelease(device);
        return primary;
    }
}
