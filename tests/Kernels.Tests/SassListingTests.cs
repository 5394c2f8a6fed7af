using Engine.Kernels.Assembler;

namespace Engine.Kernels.Tests;

/// <summary>The SASS reader on listings written by hand in nvdisasm's format.</summary>
public class SassListingTests
{
    private const string Listing = """
        .text.Kernel_k:
                /*0000*/                   LDC R1, c[0x0][0x28] ;
                /*0010*/                   MOV R0, RZ ;
        .L_x_1:
                /*0020*/                   LD.E.128 R4, [R2.64] ;
                /*0030*/                   LDS.128 R8, [R12] ;
        .L_x_2:
                /*0040*/                   FFMA R20, R8, R4, R20 ;
                /*0050*/                   FFMA R21, R9, R5, R21 ;
                /*0060*/                   LDS R9, [R13] ;
                /*0070*/              @!P0 BRA `(.L_x_2) ;
                /*0080*/                   STG.E [R2.64], R20 ;
                /*0090*/                   FMUL R3, R3, R3 ;
                /*00a0*/               @P1 BRA `(.L_x_1) ;
                /*00b0*/                   EXIT ;
        .L_x_3:
                /*00c0*/                   BRA `(.L_x_3);
        """;

    [Fact]
    public void Loops_come_from_backward_branches_and_the_trap_loop_is_not_one()
    {
        var sass = SassListing.Parse(Listing);
        Assert.Equal(13, sass.Instructions.Count);
        Assert.Equal([(0x40, 0x70), (0x20, 0xa0)], sass.Loops.Select(l => (l.Start, l.End)));
        Assert.Equal(["@!P0", "@P1", ""], sass.Instructions.Where(i => i.Base == "BRA").Select(i => i.Predicate));
    }

    [Fact]
    public void The_main_loop_is_the_innermost_loop_with_the_most_fma()
    {
        var main = SassListing.Parse(Listing).MainLoop!;
        Assert.Equal((0x40, 0x70), (main.Start, main.End));
        var mix = LoopMix.Of(main);
        Assert.Equal((4, 2, 0, 0), (mix.Instructions, mix.Ffma, mix.Fmul, mix.Hmma));
        Assert.Equal(new WidthCounts(0, 1, 0, 0), mix.SharedLoads);
        Assert.Equal(0.5, mix.MathShare);
    }

    [Fact]
    public void Widths_and_memory_kinds_are_read_from_the_opcode()
    {
        var outer = SassListing.Parse(Listing).Loops.Single(l => l.Start == 0x20);
        var mix = LoopMix.Of(outer);
        Assert.Equal(new WidthCounts(0, 0, 0, 1), mix.GlobalLoads);
        Assert.Equal(new WidthCounts(0, 1, 0, 1), mix.SharedLoads);
        Assert.Equal(new WidthCounts(0, 1, 0, 0), mix.GlobalStores);
        Assert.Equal(1, mix.Fmul);
        Assert.Equal("1x4B 1x16B", mix.SharedLoads.ToString());
    }

    [Fact]
    public void Straight_line_code_has_no_main_loop() =>
        Assert.Null(SassListing.Parse("/*0000*/ MOV R1, RZ ;\n/*0010*/ EXIT ;").MainLoop);

    [Fact]
    public void The_ptxas_report_is_read_per_function()
    {
        const string log = """
            ptxas info    : 0 bytes gmem
            ptxas info    : Compiling entry function 'Kernel_a' for 'sm_90'
            ptxas info    : Function properties for Kernel_a
                40 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
            ptxas info    : Used 40 registers, 8320 bytes smem, 48 bytes lmem, 400 bytes cmem[0]
            ptxas info    : Compiling entry function 'Kernel_b' for 'sm_90'
            ptxas info    : Function properties for Kernel_b
                0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
            ptxas info    : Used 12 registers, 380 bytes cmem[0]
            """;
        var r = Ptxas.ParseLog(log);
        Assert.Equal((40, 8320, 48, 40, 8, 12), (r["Kernel_a"].Registers, r["Kernel_a"].StaticShared, r["Kernel_a"].LocalBytes, r["Kernel_a"].StackFrame, r["Kernel_a"].SpillStores, r["Kernel_a"].SpillLoads));
        Assert.Equal((12, 0, 0, 0), (r["Kernel_b"].Registers, r["Kernel_b"].StaticShared, r["Kernel_b"].LocalBytes, r["Kernel_b"].SpillStores));
    }
}
