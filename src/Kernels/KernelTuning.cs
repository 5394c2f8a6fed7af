namespace Engine.Kernels;

/// <summary>
/// Tile sizes of the GEMM-shaped kernels. One kernel body serves both accelerators; only these
/// numbers differ. CUDA gets 16x16 groups sized for occupancy and reuse. The CPU emulator runs one OS
/// thread per GPU thread and every group barrier is a handshake between OS threads, so it gets
/// one-thread groups (barriers become near no-ops) that each compute an 8x4 block.
/// </summary>
/// <param name="Tile">Edge of a square group of threads (Tile x Tile threads).</param>
/// <param name="Work">Register blocking: a conv thread computes Work columns of Work rows in each half of its group's block (at most 4; 4 takes the float4 path).</param>
/// <param name="Depth">Reduction steps staged in shared memory between two barriers (a multiple of 4).</param>
public readonly record struct KernelTuning(int Tile, int Work, int Depth)
{
    public static KernelTuning Cpu { get; } = new(Tile: 1, Work: 4, Depth: 16);
    public static KernelTuning Gpu { get; } = new(Tile: 16, Work: 4, Depth: 16);

    /// <summary>Threads in one group of a 2-D tiled kernel.</summary>
    public int GroupSize => Tile * Tile;

    /// <summary>Output columns covered by one group (a conv group covers 2·Block rows, a linear group Tile).</summary>
    public int Block => Tile * Work;
}
