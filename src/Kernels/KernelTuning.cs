namespace Engine.Kernels;

/// <summary>
/// Tile sizes of the GEMM-shaped kernels. One kernel body serves both accelerators; only these
/// numbers differ. The CPU emulator runs one OS thread per GPU thread and pays dearly for barriers,
/// so its tiles are small; CUDA gets tiles sized for occupancy and reuse.
/// </summary>
/// <param name="Tile">Edge of a square shared-memory tile (threads per group edge).</param>
/// <param name="Work">Outputs each thread computes along each edge (register blocking).</param>
public readonly record struct KernelTuning(int Tile, int Work)
{
    public static KernelTuning Cpu { get; } = new(Tile: 4, Work: 4);
    public static KernelTuning Gpu { get; } = new(Tile: 16, Work: 4);

    /// <summary>Threads in one group of a 2-D tiled kernel.</summary>
    public int GroupSize => Tile * Tile;

    /// <summary>Output edge covered by one group.</summary>
    public int Block => Tile * Work;
}
