using Engine.Kernels.Assembler;

namespace Engine.Kernels.Tests;

/// <summary>
/// The occupancy calculator against cases worked by hand from NVIDIA's rules (registers allocated per warp in
/// units of 256 from one of four sub-partitions of 16K registers; shared memory per block rounded up to 128 bytes
/// after a 1 KB system reservation). Each expectation's arithmetic is in its comment.
/// </summary>
public class OccupancyTests
{
    private static readonly CudaArchitectureLimits Sm80 = CudaArchitectureLimits.Sm80, Sm86 = CudaArchitectureLimits.Sm86, Sm90 = CudaArchitectureLimits.Sm90;

    [Fact]
    public void Conv_gemm_on_sm90_is_register_limited_at_three_quarters()
    {
        // 40 regs -> 1280 per warp; 16384 / 1280 = 12 warps per sub-partition -> 48 warps -> 6 groups of 8 warps.
        // Warps allow 64 / 8 = 8, shared (8320 + 1024 = 9344 B) 233472 / 9344 = 24, blocks 32. 6 x 8 = 48 of 64 warps.
        var o = Occupancy.Compute(Sm90, 256, 40, 8320);
        Assert.Equal(new Occupancy(6, 48, 0.75, OccupancyLimiter.Registers), o);
    }

    [Fact]
    public void The_same_kernel_fills_an_sm86()
    {
        // sm_86 has 48 warps: warps allow 48 / 8 = 6 groups, registers 6 as well (ties name warps), shared 102400 / 9344 = 10.
        var o = Occupancy.Compute(Sm86, 256, 40, 8320);
        Assert.Equal(new Occupancy(6, 48, 1.0, OccupancyLimiter.Warps), o);
    }

    [Fact]
    public void Tf32_conv_is_register_limited_on_sm90_and_shared_limited_on_sm86()
    {
        // 71 regs -> 2272 -> 2304 per warp; 16384 / 2304 = 7 per sub-partition -> 28 warps -> 7 groups of 4 warps (28 / 64).
        Assert.Equal(new Occupancy(7, 28, 28 / 64.0, OccupancyLimiter.Registers), Occupancy.Compute(Sm90, 128, 71, 26112));
        // sm_86: 26112 + 1024 = 27136 B per group; 102400 / 27136 = 3 groups -> 12 of 48 warps.
        Assert.Equal(new Occupancy(3, 12, 0.25, OccupancyLimiter.SharedMemory), Occupancy.Compute(Sm86, 128, 71, 26112));
    }

    [Fact]
    public void Tiny_groups_hit_the_block_limit()
    {
        // One warp per group, 16 regs: registers allow 128 groups, shared 102400 / 1024 = 100, warps 48, but sm_86 holds 16 blocks.
        Assert.Equal(new Occupancy(16, 16, 16 / 48.0, OccupancyLimiter.Blocks), Occupancy.Compute(Sm86, 32, 16, 0));
    }

    [Fact]
    public void A_group_that_needs_more_registers_than_the_sm_has_cannot_launch()
    {
        // 1024 threads x 72 regs: 32 warps x 2304 = 73728 > 65536 registers per block.
        Assert.Equal(0, Occupancy.Compute(Sm80, 1024, 72, 0).BlocksPerSm);
        Assert.Equal(0, Occupancy.Compute(Sm86, 128, 16, Sm86.MaxSharedPerBlock + 1).BlocksPerSm);
    }

    [Fact]
    public void Max_potential_block_size_is_the_largest_size_with_the_most_resident_threads()
    {
        // 40 regs on sm_90 allow 48 warps. 1024 threads: 1 group = 1024 resident. 768: 2 groups = 1536, the most
        // 48 warps can hold, so nothing smaller beats it (strictly) and 768 is the answer.
        Assert.Equal(768, Occupancy.MaxPotentialBlockSize(Sm90, 40, 0));
        // 16 regs, nothing else binding: 1024 threads x 2 groups = 2048 = the SM's maximum at once.
        Assert.Equal(1024, Occupancy.MaxPotentialBlockSize(Sm90, 16, 0));
        // sm_86 holds 1536 threads: 1024 gives one group; 768 gives two = 1536.
        Assert.Equal(768, Occupancy.MaxPotentialBlockSize(Sm86, 16, 0));
    }

    [Fact]
    public void Bad_block_sizes_are_rejected() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => Occupancy.Compute(Sm90, 1025, 32, 0));

    [Fact]
    public void Architectures_are_parsed_by_name()
    {
        Assert.Same(Sm90, CudaArchitectureLimits.Parse(" SM_90 "));
        var e = Assert.Throws<ArgumentException>(() => CudaArchitectureLimits.Parse("sm_75"));
        Assert.Contains("sm_80, sm_86, sm_89, sm_90", e.Message, StringComparison.Ordinal);
    }
}
