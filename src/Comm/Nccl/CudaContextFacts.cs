using System.Runtime.InteropServices;

namespace Engine.Comm.Nccl;

/// <summary>
/// Which CUDA context each thing NCCL is given belongs to, from the driver (libcuda.so.1): the device's primary
/// context (the one NCCL's cudaSetDevice makes current), the context current on the communicator's thread just
/// before and just after NCCL's init, and the contexts of the communicator's stream and of a buffer it reduces.
/// NCCL needs them all to be the primary context; a GPU run prints them (the NCCL self-check) so a failure there
/// can be told apart from any other.
/// </summary>
public sealed partial record CudaContextFacts(nint Primary, nint CurrentBeforeInit, nint CurrentAfterInit, nint Stream, nint Buffer)
{
    private const string Driver = "libcuda.so.1";
    private const int PointerAttributeContext = 1; // CU_POINTER_ATTRIBUTE_CONTEXT

    /// <summary>True when every context is the device's primary one.</summary>
    public bool AllPrimary => Primary != 0 && new[] { CurrentBeforeInit, CurrentAfterInit, Stream, Buffer }.All(c => c == Primary);

    public override string ToString()
        => $"primary context 0x{Primary:x}; current on the communicator's thread before init 0x{CurrentBeforeInit:x}, after init 0x{CurrentAfterInit:x}; " +
           $"the stream's 0x{Stream:x}; a buffer's 0x{Buffer:x}: {(AllPrimary ? "all the primary context" : "NOT all the primary context")}";

    /// <summary>The context current on the calling thread (0: none, or the driver did not answer).</summary>
    internal static nint Current() => cuCtxGetCurrent(out nint context) == 0 ? context : 0;

    /// <summary>The context a stream belongs to (0 when the driver did not answer).</summary>
    internal static nint OfStream(nint stream) => cuStreamGetCtx(stream, out nint context) == 0 ? context : 0;

    /// <summary>The context a device allocation belongs to (0 when the driver did not answer).</summary>
    internal static nint OfPointer(nint pointer) => cuPointerGetAttribute(out nint context, PointerAttributeContext, pointer) == 0 ? context : 0;

    /// <summary>CUDA device <paramref name="ordinal"/>'s primary context handle, without keeping a reference to it (0 when the driver did not answer).</summary>
    internal static nint PrimaryOf(int ordinal)
    {
        if (cuDeviceGet(out int device, ordinal) != 0 || cuDevicePrimaryCtxRetain(out nint primary, device) != 0)
        {
            return 0;
        }
        _ = cuDevicePrimaryCtxRelease(device);
        return primary;
    }

    [LibraryImport(Driver)] private static partial int cuCtxGetCurrent(out nint context);
    [LibraryImport(Driver)] private static partial int cuStreamGetCtx(nint stream, out nint context);
    [LibraryImport(Driver)] private static partial int cuPointerGetAttribute(out nint data, int attribute, nint pointer);
    [LibraryImport(Driver)] private static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Driver)] private static partial int cuDevicePrimaryCtxRetain(out nint context, int device);
    [LibraryImport(Driver, EntryPoint = "cuDevicePrimaryCtxRelease_v2")] private static partial int cuDevicePrimaryCtxRelease(int device);
}
