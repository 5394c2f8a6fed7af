namespace Engine.Kernels.Assembler;

/// <summary>
/// The per-SM limits of one GPU architecture that decide how many groups (blocks) can be resident at once,
/// from NVIDIA's compute-capability tables (CUDA C++ Programming Guide, "Features and Technical Specifications").
/// </summary>
/// <param name="Name">sm_80, sm_86, sm_89 or sm_90.</param>
/// <param name="Card">A card of that architecture, for the reader.</param>
/// <param name="MaxWarpsPerSm">Resident warps per SM (2048 or 1536 threads).</param>
/// <param name="MaxBlocksPerSm">Resident blocks per SM.</param>
/// <param name="SharedPerSm">Shared memory per SM at the largest carveout, bytes.</param>
/// <param name="MaxSharedPerBlock">Largest shared memory one block may use (with opt-in above 48 KB), bytes.</param>
public sealed record CudaArchitectureLimits(string Name, string Card, int MaxWarpsPerSm, int MaxBlocksPerSm, int SharedPerSm, int MaxSharedPerBlock)
{
    public const int WarpSize = 32;
    public const int RegistersPerSm = 65536;
    public const int MaxRegistersPerBlock = 65536;
    public const int MaxThreadsPerBlock = 1024;

    /// <summary>Registers are allocated per warp in units of 256.</summary>
    public const int RegisterAllocationUnit = 256;

    /// <summary>Since Volta an SM has four sub-partitions, each with a quarter of the register file; a warp's registers come from one.</summary>
    public const int SubPartitions = 4;

    /// <summary>Shared memory is allocated per block in units of 128 bytes.</summary>
    public const int SharedAllocationUnit = 128;

    /// <summary>Shared memory the system reserves per block since compute capability 8.0.</summary>
    public const int ReservedSharedPerBlock = 1024;

    public static CudaArchitectureLimits Sm80 { get; } = new("sm_80", "A100", 64, 32, 167936, 166912);
    public static CudaArchitectureLimits Sm86 { get; } = new("sm_86", "RTX 3090 / A40", 48, 16, 102400, 101376);
    public static CudaArchitectureLimits Sm89 { get; } = new("sm_89", "L40 / RTX 4090", 48, 24, 102400, 101376);
    public static CudaArchitectureLimits Sm90 { get; } = new("sm_90", "H100 / H200", 64, 32, 233472, 232448);

    public static IReadOnlyList<CudaArchitectureLimits> All { get; } = [Sm80, Sm86, Sm89, Sm90];

    public int MaxThreadsPerSm => MaxWarpsPerSm * WarpSize;

    public static CudaArchitectureLimits Parse(string name) =>
        All.FirstOrDefault(a => string.Equals(a.Name, name.Trim(), StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"Unknown architecture '{name}': expected one of {string.Join(", ", All.Select(a => a.Name))}.");
}

/// <summary>What limits the resident groups of a kernel on an SM.</summary>
public enum OccupancyLimiter
{
    Warps,
    Registers,
    SharedMemory,
    Blocks,
}

/// <summary>Theoretical occupancy of a launch: resident blocks per SM, the warps they hold, and the limit that bound them.</summary>
public readonly record struct Occupancy(int BlocksPerSm, int ActiveWarps, double Fraction, OccupancyLimiter Limiter)
{
    /// <summary>
    /// Resident blocks per SM for <paramref name="threadsPerBlock"/> threads using <paramref name="registersPerThread"/>
    /// registers and <paramref name="sharedPerBlock"/> bytes of shared memory (static + dynamic), as CUDA's
    /// occupancy calculator computes it: the least of the warp, register, shared-memory and block limits.
    /// Zero blocks when the launch cannot run at all (too many registers or too much shared memory per block).
    /// </summary>
    public static Occupancy Compute(CudaArchitectureLimits arch, int threadsPerBlock, int registersPerThread, int sharedPerBlock)
    {
        ArgumentNullException.ThrowIfNull(arch);
        if (threadsPerBlock < 1 || threadsPerBlock > CudaArchitectureLimits.MaxThreadsPerBlock)
        {
            throw new ArgumentOutOfRangeException(nameof(threadsPerBlock), threadsPerBlock, $"a block has 1..{CudaArchitectureLimits.MaxThreadsPerBlock} threads");
        }
        int warpsPerBlock = (threadsPerBlock + CudaArchitectureLimits.WarpSize - 1) / CudaArchitectureLimits.WarpSize;

        int byWarps = arch.MaxWarpsPerSm / warpsPerBlock;

        int byRegisters;
        if (registersPerThread <= 0)
        {
            byRegisters = int.MaxValue;
        }
        else
        {
            int perWarp = RoundUp(registersPerThread * CudaArchitectureLimits.WarpSize, CudaArchitectureLimits.RegisterAllocationUnit);
            int warpsPerPartition = CudaArchitectureLimits.RegistersPerSm / CudaArchitectureLimits.SubPartitions / perWarp;
            byRegisters = (long)perWarp * warpsPerBlock > CudaArchitectureLimits.MaxRegistersPerBlock
                ? 0
                : warpsPerPartition * CudaArchitectureLimits.SubPartitions / warpsPerBlock;
        }

        int sharedAllocated = RoundUp(sharedPerBlock + CudaArchitectureLimits.ReservedSharedPerBlock, CudaArchitectureLimits.SharedAllocationUnit);
        int byShared = sharedPerBlock > arch.MaxSharedPerBlock ? 0 : arch.SharedPerSm / sharedAllocated;

        int byBlocks = arch.MaxBlocksPerSm;

        // Ties name the first of warps, registers, shared memory, blocks: the cheapest one to relieve is named last.
        var (blocks, limiter) = (byWarps, OccupancyLimiter.Warps);
        if (byRegisters < blocks) (blocks, limiter) = (byRegisters, OccupancyLimiter.Registers);
        if (byShared < blocks) (blocks, limiter) = (byShared, OccupancyLimiter.SharedMemory);
        if (byBlocks < blocks) (blocks, limiter) = (byBlocks, OccupancyLimiter.Blocks);
        int warps = blocks * warpsPerBlock;
        return new Occupancy(blocks, warps, (double)warps / arch.MaxWarpsPerSm, limiter);
    }

    /// <summary>
    /// The block size CUDA's cuOccupancyMaxPotentialBlockSize returns (ILGPU uses it for auto-grouped kernels):
    /// from the largest launchable size down in steps of a warp, the first size whose resident threads per SM
    /// are the most.
    /// </summary>
    public static int MaxPotentialBlockSize(CudaArchitectureLimits arch, int registersPerThread, int sharedPerBlock)
    {
        int best = 0, bestThreads = 0;
        for (int size = CudaArchitectureLimits.MaxThreadsPerBlock; size > 0; size -= CudaArchitectureLimits.WarpSize)
        {
            int threads = Compute(arch, size, registersPerThread, sharedPerBlock).BlocksPerSm * size;
            if (threads > bestThreads)
            {
                (best, bestThreads) = (size, threads);
            }
            if (bestThreads == arch.MaxThreadsPerSm)
            {
                break;
            }
        }
        return best;
    }

    private static int RoundUp(int value, int unit) => (value + unit - 1) / unit * unit;
}
