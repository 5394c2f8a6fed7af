namespace Engine.Comm.Nccl;

/// <summary>
/// Which CUDA context each thing NCCL is given belongs to, from the driver (libcuda.so.1): the device's primary
/// context (the one NCCL's cudaSetDevice makes current), the context current on the communicator's thread just
/// before and just after NCCL's init, and the contexts of the communicator's stream and of a buffer it reduces.
/// NCCL needs them all to be the primary context; a GPU run prints them (the NCCL self-check) so a failure there
/// can be told apart from any other. The driver is asked through <see cref="Engine.Kernels.CudaContexts"/>.
/// </summary>
public sealed record CudaContextFacts(nint Primary, nint CurrentBeforeInit, nint CurrentAfterInit, nint Stream, nint Buffer)
{
    /// <summary>True when every context is the device's primary one.</summary>
    public bool AllPrimary => Primary != 0 && new[] { CurrentBeforeInit, CurrentAfterInit, Stream, Buffer }.All(c => c == Primary);

    public override string ToString()
        => $"primary context 0x{Primary:x}; current on the communicator's thread before init 0x{CurrentBeforeInit:x}, after init 0x{CurrentAfterInit:x}; " +
           $"the stream's 0x{Stream:x}; a buffer's 0x{Buffer:x}: {(AllPrimary ? "all the primary context" : "NOT all the primary context")}";
}
