using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels;

/// <summary>
/// Conv2d forward as an implicit GEMM on the tensor cores in TF32 (CUDA only, not the engine's default
/// path; only the kernel bench's v3 and v4 and `engine check kernels` use it): y[K x N·OutH·OutW] = w[K x C·R·S] · im2col(x)[C·R·S x N·OutH·OutW], as in
/// <see cref="Conv2d"/>, but each warp multiplies with <c>mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32</c>
/// through inline PTX (ILGPU targets sm_80 PTX, so wgmma is out of reach; mma.sync runs on Ampere and Hopper).
/// <list type="bullet">
/// <item>A group owns a 64 x 64 output block and stages 16-deep slices: w as a 64 x 16 tile (row-major,
/// rows padded to 20 words) and im2col(x) as a 16 x 64 tile (rows padded to 72 words); both paddings make
/// the fragment loads below hit 32 different banks. Every element is rounded to TF32 once, when it is
/// staged (<c>cvt.rna.tf32.f32</c>: round to nearest, ties away from zero, 10 mantissa bits), and stored
/// as its bit pattern.</item>
/// <item>Where the operands live: ILGPU 1.5.3 hands every CudaAsm operand that is not a by-value input
/// (an <c>out</c> result, every <see cref="Ref{T}"/>/<see cref="Input{T}"/> of EmitRef) to the instruction
/// through memory; for a local variable that is a 4-byte <c>.local</c> slot per operand. So cvt writes
/// straight into the shared tiles, and <see cref="Forward"/> (v4, 256 threads, 8 warps of 32 x 16, 2 x 2
/// tiles) keeps its 16 accumulators per thread in PTX registers acc0..acc15 that it declares and zeroes
/// in one inline statement in the entry block and names in every mma, with the fragments read from the
/// tiles as plain values and passed by value: no accumulator or fragment goes through memory, and the
/// results leave the registers once, by mov into y. ptxas 11.8 (<c>engine kernels --arch sm_90</c>): 64
/// registers, no stack, 50% occupancy, 8 HMMA and 24 LDS per slice. <see cref="ForwardSharedAccumulators"/>
/// (v3, the first version: 128 threads, 4 warps of 32 x 32) keeps the 32 accumulators of each thread in
/// shared memory and hands them to each mma by reference: 4 accumulator loads and 4 stores plus 12
/// fragment loads per mma pair, 71 registers, 44% occupancy on sm_90. Both are off by default until a GPU
/// has validated them.</item>
/// <item>Fragments, per the PTX ISA's layout for m16n8k8 .tf32 (groupID g = lane / 4, t = lane % 4):
/// A a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); B b0 (k t, n g), b1 (k t+4, n g);
/// C/D c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1). The A layout was read in the ISA's
/// fragment section, the B and C/D layouts in transcriptions of it; nothing has executed them yet, so
/// the first GPU run must confirm all three (a wrong one gives O(1) errors, see below).</item>
/// <item>Loads are plain global -> shared with one barrier pair per slice (no cp.async, no double
/// buffering yet): this version is about correctness of the fragment logic first.</item>
/// </list>
/// <para><b>To verify on the first GPU run</b> (nothing below has run on a GPU yet): (1) the driver's JIT
/// accepts the PTX (v4: a <c>.reg</c> declaration in the body from inline PTX and mma operands named by it;
/// v3: two mma in one inline statement, vector operands in braces, 64-bit shared addresses);
/// (2) results match <see cref="Reference.Forward"/> (the TF32-rounded float64 reference) within fp32
/// accumulation noise (the conv case's tolerance, <c>ConvCase</c>) — a swapped fragment layout shows as
/// errors of O(1), not O(1e-3); (3) results match the exact <see cref="Conv2d.Reference.Forward"/> within
/// <see cref="Tolerance(in Conv2dShape)"/> (rtol 1e-3, atol 1e-3·√(C·R·S) for inputs of magnitude ≤ 1); (4) shapes that
/// are not multiples of 64 in K or N·OutH·OutW, nor of 16 in C·R·S; (5) the time against v1
/// (<see cref="Conv2d.Forward(Device, ArrayView{float}, ArrayView{float}, ArrayView{float}, in Conv2dShape)"/>)
/// in <c>engine bench kernels</c>, and SASS showing HMMA.1688.F32.TF32.</para>
/// </summary>
public static class Conv2dTf32
{
    private const int BlockM = 64;
    private const int BlockN = 64;
    private const int Slice = 16;
    /// <summary>Threads of a group of the register-accumulator kernel: 8 warps, 2 x 4, each owning 32 x 16 of the block.</summary>
    private const int Threads = 256;

    /// <summary>Threads of a group of the shared-accumulator kernel: 4 warps, 2 x 2, each owning 32 x 32 of the block.</summary>
    private const int SharedThreads = 128;

    /// <summary>Every group has <see cref="Threads"/> threads, whatever the tuning (the fragment layout is fixed).</summary>
    internal static int GroupThreads(KernelTuning tuning) => Threads;

    /// <summary>The shared-accumulator kernel's groups: <see cref="SharedThreads"/>.</summary>
    internal static int SharedGroupThreads(KernelTuning tuning) => SharedThreads;

    /// <summary>Words per staged row of w (16 + 4): rows g·20 + t land on 32 different banks.</summary>
    private const int AStride = Slice + 4;

    /// <summary>Words per staged row of im2col(x) (64 + 8): t·72 + g lands on 32 different banks.</summary>
    private const int BStride = BlockN + 8;

    /// <summary>Accumulator words per thread: 2 x 4 tiles of m16n8, 4 each.</summary>
    private const int AccPerThread = 32;

    // ---- kernels ----

    /// <summary>
    /// The loader of both kernels: this thread's roles in staging a 16-deep slice of w (64 x 16, depth index
    /// tid % 16, rows tid / 16 + (threads / 16)·i) and of im2col(x) (16 x 64, pixel tid % 64, depth rows
    /// tid / 64 + (threads / 64)·i), with the output pixel of its im2col column decoded once.
    /// </summary>
    private readonly struct SliceLoader
    {
        public readonly int AK, AM, BCol, BK, XImage, Ih0, Iw0;
        private readonly int _threads;
        public readonly bool PInside;

        /// <param name="threads">The group's threads: 128 or 256 (each stages 64·16 / threads values of each tile).</param>
        public SliceLoader(Conv2d.Args a, int tid, int col0, int threads)
        {
            _threads = threads;
            AK = tid & (Slice - 1);
            AM = tid / Slice;
            BCol = tid & (BlockN - 1);
            BK = tid / BlockN;
            int p = col0 + BCol;
            PInside = p < a.N * a.OHW;
            int pc = PInside ? p : 0;
            int pn = a.DivOHW.Divide(pc), pRem = pc - pn * a.OHW, poh = a.DivOutW.Divide(pRem), pow = pRem - poh * a.OutW;
            Ih0 = poh * a.Stride - a.Pad;
            Iw0 = pow * a.Stride - a.Pad;
            XImage = pn * a.C * a.HW;
        }

        /// <summary>
        /// Stages the slice at depth <paramref name="k0"/> into the tiles, each element rounded to TF32 once
        /// (cvt.rna.tf32.f32 writes its bit pattern straight into shared memory: an output operand of inline
        /// PTX goes to the memory it names, so no local memory is involved); zeros outside the GEMM.
        /// </summary>
        public void Stage(ArrayView<float> x, ArrayView<float> w, Conv2d.Args a, ArrayView<uint> tileA, ArrayView<uint> tileB, int row0, int k0)
        {
            int rows = a.K, depth = a.CRS;
            int q = k0 + AK;
            int aRows = _threads / Slice, bRows = _threads / BlockN;
            for (int i = 0; i < BlockM / aRows; i++)
            {
                int m = AM + aRows * i, gm = row0 + m;
                float v = 0f;
                if (gm < rows && q < depth)
                {
                    v = w[gm * depth + q];
                }
                CudaAsm.Emit("cvt.rna.tf32.f32 %0, %1;", out tileA[m * AStride + AK], v);
            }
            for (int i = 0; i < Slice / bRows; i++)
            {
                int kk = BK + bRows * i, qq = k0 + kk;
                float v = 0f;
                if (PInside && qq < depth)
                {
                    int c = a.DivRS.Divide(qq), rs = qq - c * a.RS, r = a.DivS.Divide(rs), s = rs - r * a.S;
                    int ih = Ih0 + r, iw = Iw0 + s;
                    if (ih >= 0 && ih < a.H && iw >= 0 && iw < a.W)
                    {
                        v = x[XImage + (c * a.H + ih) * a.W + iw];
                    }
                }
                CudaAsm.Emit("cvt.rna.tf32.f32 %0, %1;", out tileB[kk * BStride + BCol], v);
            }
        }
    }

    /// <summary>In the staged tiles: from a lane's a0 to its values 8 rows further (a1, a3), and from its b0 to B's depth rows + 4, + 8 and + 12.</summary>
    private const int A8 = 8 * AStride, B4 = 4 * BStride, B8 = 8 * BStride, B12 = 12 * BStride;

    /// <summary>
    /// y[n,k,oh,ow] = Σ_{c,r,s} tf32(x[n,c,oh·stride−pad+r, ow·stride−pad+s]) · tf32(w[k,c,r,s]), accumulated in
    /// fp32 in registers: the 32 accumulators of a thread are PTX registers acc0..acc31, declared and zeroed
    /// once by one inline statement in the entry block and named in every mma.sync, so they never pass
    /// through memory (ILGPU 1.5.3 would route an accumulator given as an operand through a .local slot).
    /// The fragments are plain values read from the staged tiles and passed by value (inputs go to the
    /// instruction in registers); the results leave acc0..acc31 once, at the end, by mov into y.
    /// </summary>
    [KernelName("conv2d_fwd_tf32")]
    [GroupSize(nameof(GroupThreads))]
    internal static void ForwardKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, Conv2d.Args a)
    {
        var tileA = SharedMemory.Allocate<uint>(BlockM * AStride);
        var tileB = SharedMemory.Allocate<uint>(Slice * BStride);
        int tid = Group.IdxX, lane = tid & 31, warp = tid >> 5;
        int g = lane >> 2, t = lane & 3;
        int wm = (warp >> 2) * 32, wn = (warp & 3) * 16;
        int row0 = Grid.IdxY * BlockM, col0 = Grid.IdxX * BlockN;
        int rows = a.K, cols = a.N * a.OHW;
        var loader = new SliceLoader(a, tid, col0, Threads);

        CudaAsm.Emit(".reg .f32 acc<16>; " +
            "mov.f32 acc0, 0f00000000; mov.f32 acc1, 0f00000000; mov.f32 acc2, 0f00000000; mov.f32 acc3, 0f00000000; mov.f32 acc4, 0f00000000; mov.f32 acc5, 0f00000000; mov.f32 acc6, 0f00000000; mov.f32 acc7, 0f00000000; mov.f32 acc8, 0f00000000; mov.f32 acc9, 0f00000000; mov.f32 acc10, 0f00000000; mov.f32 acc11, 0f00000000; mov.f32 acc12, 0f00000000; mov.f32 acc13, 0f00000000; mov.f32 acc14, 0f00000000; mov.f32 acc15, 0f00000000;");

        for (int k0 = 0; k0 < a.CRS; k0 += Slice)
        {
            loader.Stage(x, w, a, tileA, tileB, row0, k0);
            Group.Barrier();

            // This lane's a0 (row g, depth t) and b0 (depth t, column g) of the warp's first tile; per PTX's
            // m16n8k8 .tf32 layout a1..a3 sit 8 rows and 4 depths on, b1 4 depths on. The tiles are written
            // out one by one (here and in the stores below) because PTX register names must be literal in
            // the inline statement: acc4..acc7 cannot be computed from a loop index.
            int ar = (wm + g) * AStride + t, br = t * BStride + wn + g;
            // Tile 0: rows wm + 0 + (g, g + 8), columns wn + 0 + g; accumulators 0-3.
            {
                int ia = ar + 0 * AStride, ib = br + 0;
                CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {acc0, acc1, acc2, acc3}, {%0, %1, %2, %3}, {%4, %5}, {acc0, acc1, acc2, acc3};",
                    tileA[ia], tileA[ia + A8], tileA[ia + 4], tileA[ia + A8 + 4], tileB[ib], tileB[ib + B4]);
                CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {acc0, acc1, acc2, acc3}, {%0, %1, %2, %3}, {%4, %5}, {acc0, acc1, acc2, acc3};",
                    tileA[ia + 8], tileA[ia + A8 + 8], tileA[ia + 12], tileA[ia + A8 + 12], tileB[ib + B8], tileB[ib + B12]);
            }
            // Tile 1: rows wm + 0 + (g, g + 8), columns wn + 8 + g; accumulators 4-7.
            {
                int ia = ar + 0 * AStride, ib = br + 8;
                CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {acc4, acc5, acc6, acc7}, {%0, %1, %2, %3}, {%4, %5}, {acc4, acc5, acc6, acc7};",
                    tileA[ia], tileA[ia + A8], tileA[ia + 4], tileA[ia + A8 + 4], tileB[ib], tileB[ib + B4]);
                CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {acc4, acc5, acc6, acc7}, {%0, %1, %2, %3}, {%4, %5}, {acc4, acc5, acc6, acc7};",
                    tileA[ia + 8], tileA[ia + A8 + 8], tileA[ia + 12], tileA[ia + A8 + 12], tileB[ib + B8], tileB[ib + B12]);
            }
            // Tile 2: rows wm + 16 + (g, g + 8), columns wn + 0 + g; accumulators 8-11.
            {
                int ia = ar + 16 * AStride, ib = br + 0;
                CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {acc8, acc9, acc10, acc11}, {%0, %1, %2, %3}, {%4, %5}, {acc8, acc9, acc10, acc11};",
                    tileA[ia], tileA[ia + A8], tileA[ia + 4], tileA[ia + A8 + 4], tileB[ib], tileB[ib + B4]);
                CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {acc8, acc9, acc10, acc11}, {%0, %1, %2, %3}, {%4, %5}, {acc8, acc9, acc10, acc11};",
                    tileA[ia + 8], tileA[ia + A8 + 8], tileA[ia + 12], tileA[ia + A8 + 12], tileB[ib + B8], tileB[ib + B12]);
            }
            // Tile 3: rows wm + 16 + (g, g + 8), columns wn + 8 + g; accumulators 12-15.
            {
                int ia = ar + 16 * AStride, ib = br + 8;
                CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {acc12, acc13, acc14, acc15}, {%0, %1, %2, %3}, {%4, %5}, {acc12, acc13, acc14, acc15};",
                    tileA[ia], tileA[ia + A8], tileA[ia + 4], tileA[ia + A8 + 4], tileB[ib], tileB[ib + B4]);
                CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {acc12, acc13, acc14, acc15}, {%0, %1, %2, %3}, {%4, %5}, {acc12, acc13, acc14, acc15};",
                    tileA[ia + 8], tileA[ia + A8 + 8], tileA[ia + 12], tileA[ia + A8 + 12], tileB[ib + B8], tileB[ib + B12]);
            }
            Group.Barrier();
        }

        int r0 = row0 + wm + g, c0 = col0 + wn + 2 * t;
        {
            var (o0, o1) = Columns(a, c0 + 0, cols);
            int rA = r0 + 0, rB = rA + 8;
            if (rA < rows && o0 >= 0) CudaAsm.Emit("mov.f32 %0, acc0;", out y[rA * a.OHW + o0]);
            if (rA < rows && o1 >= 0) CudaAsm.Emit("mov.f32 %0, acc1;", out y[rA * a.OHW + o1]);
            if (rB < rows && o0 >= 0) CudaAsm.Emit("mov.f32 %0, acc2;", out y[rB * a.OHW + o0]);
            if (rB < rows && o1 >= 0) CudaAsm.Emit("mov.f32 %0, acc3;", out y[rB * a.OHW + o1]);
        }
        {
            var (o0, o1) = Columns(a, c0 + 8, cols);
            int rA = r0 + 0, rB = rA + 8;
            if (rA < rows && o0 >= 0) CudaAsm.Emit("mov.f32 %0, acc4;", out y[rA * a.OHW + o0]);
            if (rA < rows && o1 >= 0) CudaAsm.Emit("mov.f32 %0, acc5;", out y[rA * a.OHW + o1]);
            if (rB < rows && o0 >= 0) CudaAsm.Emit("mov.f32 %0, acc6;", out y[rB * a.OHW + o0]);
            if (rB < rows && o1 >= 0) CudaAsm.Emit("mov.f32 %0, acc7;", out y[rB * a.OHW + o1]);
        }
        {
            var (o0, o1) = Columns(a, c0 + 0, cols);
            int rA = r0 + 16, rB = rA + 8;
            if (rA < rows && o0 >= 0) CudaAsm.Emit("mov.f32 %0, acc8;", out y[rA * a.OHW + o0]);
            if (rA < rows && o1 >= 0) CudaAsm.Emit("mov.f32 %0, acc9;", out y[rA * a.OHW + o1]);
            if (rB < rows && o0 >= 0) CudaAsm.Emit("mov.f32 %0, acc10;", out y[rB * a.OHW + o0]);
            if (rB < rows && o1 >= 0) CudaAsm.Emit("mov.f32 %0, acc11;", out y[rB * a.OHW + o1]);
        }
        {
            var (o0, o1) = Columns(a, c0 + 8, cols);
            int rA = r0 + 16, rB = rA + 8;
            if (rA < rows && o0 >= 0) CudaAsm.Emit("mov.f32 %0, acc12;", out y[rA * a.OHW + o0]);
            if (rA < rows && o1 >= 0) CudaAsm.Emit("mov.f32 %0, acc13;", out y[rA * a.OHW + o1]);
            if (rB < rows && o0 >= 0) CudaAsm.Emit("mov.f32 %0, acc14;", out y[rB * a.OHW + o0]);
            if (rB < rows && o1 >= 0) CudaAsm.Emit("mov.f32 %0, acc15;", out y[rB * a.OHW + o1]);
        }
    }

    /// <summary>GEMM columns <paramref name="col"/> and +1 as offsets n·K·OHW + pixel into y (-1 outside the GEMM); row k adds k·OHW.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (int O0, int O1) Columns(Conv2d.Args a, int col, int cols)
    {
        int kOhw = a.K * a.OHW;
        int o0 = -1, o1 = -1;
        if (col < cols)
        {
            int n = a.DivOHW.Divide(col);
            o0 = n * kOhw + col - n * a.OHW;
        }
        if (col + 1 < cols)
        {
            int n = a.DivOHW.Divide(col + 1);
            o1 = n * kOhw + col + 1 - n * a.OHW;
        }
        return (o0, o1);
    }

    /// <summary>
    /// The first TF32 version, kept for the bench (v3): the same tiles and fragments, but the 32 accumulators
    /// of each thread live in shared memory (word j of thread i at j·128 + i) and go to each mma statement by
    /// reference, as ILGPU 1.5.3 passes them (per mma pair 4 accumulator loads and 4 stores plus 12 fragment
    /// loads per thread).
    /// </summary>
    [KernelName("conv2d_fwd_tf32_smem_acc")]
    [GroupSize(nameof(SharedGroupThreads))]
    internal static void ForwardSharedAccumulatorsKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, Conv2d.Args a)
    {
        var tileA = SharedMemory.Allocate<uint>(BlockM * AStride);
        var tileB = SharedMemory.Allocate<uint>(Slice * BStride);
        var acc = SharedMemory.Allocate<Ref<float>>(AccPerThread * SharedThreads);
        int tid = Group.IdxX, lane = tid & 31, warp = tid >> 5;
        int g = lane >> 2, t = lane & 3;
        int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
        int row0 = Grid.IdxY * BlockM, col0 = Grid.IdxX * BlockN;
        int rows = a.K, cols = a.N * a.OHW;
        var loader = new SliceLoader(a, tid, col0, SharedThreads);

        // This thread's accumulators: word j at acc[j·SharedThreads + tid] (consecutive threads, consecutive banks).
        for (int j = 0; j < AccPerThread; j++)
        {
            acc[j * SharedThreads + tid] = default;
        }

        for (int k0 = 0; k0 < a.CRS; k0 += Slice)
        {
            loader.Stage(x, w, a, tileA, tileB, row0, k0);
            Group.Barrier();

            // The warp's 2 x 4 tiles: A rows wm + 16·mi + g, B columns wn + 8·ni + g, accumulators 4·(4·mi + ni).
            int ar = (wm + g) * AStride + t, br = t * BStride + wn + g;
            for (int tileIdx = 0; tileIdx < 8; tileIdx++)
            {
                int mi = tileIdx >> 2, ni = tileIdx & 3;
                MmaK16(acc, 4 * tileIdx * SharedThreads + tid, tileA.Cast<Input<uint>>(), ar + 16 * mi * AStride, tileB.Cast<Input<uint>>(), br + 8 * ni);
            }
            Group.Barrier();
        }

        int r0 = row0 + wm + g, c0 = col0 + wn + 2 * t;
        for (int tileIdx = 0; tileIdx < 8; tileIdx++)
        {
            int mi = tileIdx >> 2, ni = tileIdx & 3;
            Store(y, a, acc, 4 * tileIdx * SharedThreads + tid, r0 + 16 * mi, c0 + 8 * ni, rows, cols);
        }
    }

    /// <summary>
    /// Two chained m16n8k8 products over a 16-deep slice for one 16 x 8 tile: D = A[:, 0:8]·B[0:8, :] + C,
    /// then D = A[:, 8:16]·B[8:16, :] + D. <paramref name="a"/> indexes this lane's a0 in the staged w tile
    /// (row g, depth t), <paramref name="b"/> its b0 in the staged im2col tile (depth t, column g), <paramref name="c"/>
    /// its c0 in the accumulators (c1..c3 follow at a stride of <see cref="SharedThreads"/>). Operands go to the
    /// instruction straight from shared memory: ILGPU 1.5.3 passes every CudaAsm operand that is not a plain
    /// input through memory, and shared memory keeps that off local memory.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MmaK16(ArrayView<Ref<float>> acc, int c, ArrayView<Input<uint>> tileA, int a, ArrayView<Input<uint>> tileB, int b)
    {
        const int a8 = A8, b4 = B4, b8 = B8, b12 = B12;
        CudaAsm.EmitRef(
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%12, %13}, {%0, %1, %2, %3}; " +
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%8, %9, %10, %11}, {%14, %15}, {%0, %1, %2, %3};",
            ref acc[c], ref acc[c + SharedThreads], ref acc[c + 2 * SharedThreads], ref acc[c + 3 * SharedThreads],
            ref tileA[a], ref tileA[a + a8], ref tileA[a + 4], ref tileA[a + a8 + 4],
            ref tileA[a + 8], ref tileA[a + a8 + 8], ref tileA[a + 12], ref tileA[a + a8 + 12],
            ref tileB[b], ref tileB[b + b4], ref tileB[b + b8], ref tileB[b + b12]);
    }

    /// <summary>Writes one accumulator fragment (c0..c3 at acc[c + i·SharedThreads]): rows <paramref name="row"/> and +8 (output channels), GEMM columns <paramref name="col"/> and +1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(ArrayView<float> y, Conv2d.Args a, ArrayView<Ref<float>> acc, int c, int row, int col, int rows, int cols)
    {
        var (o0, o1) = Columns(a, col, cols);
        if (row < rows)
        {
            int b = row * a.OHW;
            if (o0 >= 0) y[b + o0] = acc[c].Value;
            if (o1 >= 0) y[b + o1] = acc[c + SharedThreads].Value;
        }
        if (row + 8 < rows)
        {
            int b = (row + 8) * a.OHW;
            if (o0 >= 0) y[b + o0] = acc[c + 2 * SharedThreads].Value;
            if (o1 >= 0) y[b + o1] = acc[c + 3 * SharedThreads].Value;
        }
    }

    // ---- launchers ----

    /// <summary>Why <paramref name="dev"/> cannot run the TF32 convolution, or null when it can (a CUDA GPU).</summary>
    public static string? CannotRunOn(Device dev) =>
        !dev.IsCuda ? $"the TF32 tensor-core convolution runs only on CUDA GPUs (inline PTX mma.sync), not on {dev.Spec} ({dev.Name})"
        : dev.IsSimulated ? $"the simulated GPU ({dev.Name}) cannot parse the TF32 tensor-core instructions (mma.sync .tf32, cvt.rna.tf32.f32)"
        : null;

    /// <summary>
    /// y = conv2d(x, w) in TF32 on the tensor cores: x [N,C,H,W], w [K,C,R,S], y [N,K,OutH,OutW] (overwritten).
    /// Results differ from fp32 by TF32 input rounding; see <see cref="Tolerance(in Conv2dShape)"/>.
    /// </summary>
    /// <exception cref="NotSupportedException">The device cannot run it (<see cref="CannotRunOn"/>).</exception>
    /// <exception cref="ArgumentException">The shape is invalid or a buffer's length does not match it.</exception>
    public static void Forward(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, in Conv2dShape s)
        => Launch(dev, "conv2d_fwd_tf32", ForwardKernel, Threads, x, w, y, s);

    /// <summary>The first TF32 version (accumulators in shared memory), kept for the bench; as <see cref="Forward"/> otherwise.</summary>
    public static void ForwardSharedAccumulators(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, in Conv2dShape s)
        => Launch(dev, "conv2d_fwd_tf32_smem_acc", ForwardSharedAccumulatorsKernel, SharedThreads, x, w, y, s);

    private static void Launch(Device dev, string name, Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, Conv2d.Args> entry, int threads,
        ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, in Conv2dShape s)
    {
        const string op = "Conv2dTf32.Forward";
        if (CannotRunOn(dev) is { } why)
        {
            throw new NotSupportedException($"{op}: {why}; use Conv2d.Forward there.");
        }
        using var profile = dev.Profile(name, OpCost.Conv2d(s));
        s.Validate();
        ExpectLength(op, "x", x, s.InputLength, s);
        ExpectLength(op, "w", w, s.WeightLength, s);
        ExpectLength(op, "y", y, s.OutputLength, s);
        int cols = s.N * s.OutH * s.OutW;
        var kernel = dev.Kernel(name, acc => acc.LoadKernel(entry));
        var config = new KernelConfig(new Index3D((cols + BlockN - 1) / BlockN, (s.K + BlockM - 1) / BlockM, 1), new Index3D(threads, 1, 1));
        kernel(dev.Stream, config, x, w, y, new Conv2d.Args(s, 0));
    }

    /// <summary>
    /// The agreement to expect between this kernel and the exact float64 <see cref="Conv2d.Reference.Forward"/>,
    /// for inputs of magnitude at most 1: each product carries a relative error below 2⁻¹⁰ (two TF32
    /// roundings of 2⁻¹¹), about 4e-4 standard deviation; over C·R·S terms of mean square 1/9 (uniform
    /// inputs) the sum's error has a standard deviation near 1.3e-4·√(C·R·S), so atol 1e-3·√(C·R·S) is
    /// about 7 standard deviations, and rtol 1e-3 covers outputs that do not cancel.
    /// </summary>
    public static (double Rtol, double Atol) Tolerance(in Conv2dShape s) => Tolerance((long)s.C * s.R * s.S);

    /// <summary>The TF32 tolerance of a sum of <paramref name="terms"/> products of inputs of magnitude at most 1 (see <see cref="Tolerance(in Conv2dShape)"/>).</summary>
    public static (double Rtol, double Atol) Tolerance(long terms) => (1e-3, 1e-3 * Math.Sqrt(Math.Max(1, terms)));

    private static void ExpectLength(string op, string name, ArrayView<float> view, long needed, in Conv2dShape s)
    {
        if (view.Length != needed)
        {
            throw new ArgumentException($"{op}: '{name}' has {view.Length} elements but shape {s} needs {needed}.", name);
        }
    }

    // ---- float64 references ----

    /// <summary>What the tensor cores compute, emulated in float64: the oracle for the TF32 kernel on a GPU.</summary>
    public static class Reference
    {
        /// <summary>
        /// <paramref name="v"/> rounded to TF32 as cvt.rna.tf32.f32 does: 10 mantissa bits, to nearest with
        /// ties away from zero (adding half of the dropped range to the magnitude's bits, then truncating).
        /// </summary>
        public static float RoundToTf32(float v)
        {
            if (!float.IsFinite(v))
            {
                return v;
            }
            uint bits = BitConverter.SingleToUInt32Bits(v);
            uint sign = bits & 0x8000_0000u, magnitude = bits & 0x7FFF_FFFFu;
            magnitude = (magnitude + 0x1000u) & ~0x1FFFu;
            return BitConverter.UInt32BitsToSingle(sign | magnitude);
        }

        /// <summary>
        /// Conv2d forward with both operands rounded to TF32 (<see cref="RoundToTf32"/>), every product exact
        /// (two 11-bit significands fit a double) and the sum rounded to float after every term, in (c, r, s)
        /// order; the tensor cores' own summation order within a k8 step differs, so compare with the
        /// kernel at fp32 accumulation tolerances, not bit for bit.
        /// </summary>
        public static double[] Forward(double[] x, double[] w, Conv2dShape s)
        {
            s.Validate();
            if (x.Length != s.InputLength || w.Length != s.WeightLength)
            {
                throw new ArgumentException($"Conv2dTf32.Reference.Forward: x has {x.Length} and w {w.Length} elements but shape {s} needs {s.InputLength} and {s.WeightLength}.");
            }
            double[] xt = Array.ConvertAll(x, v => (double)RoundToTf32((float)v));
            double[] wt = Array.ConvertAll(w, v => (double)RoundToTf32((float)v));
            int oh = s.OutH, ow = s.OutW;
            var y = new double[s.OutputLength];
            for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
            for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
            {
                float sum = 0f;
                for (int c = 0; c < s.C; c++)
                for (int r = 0; r < s.R; r++)
                for (int t = 0; t < s.S; t++)
                {
                    int ih = i * s.Stride - s.Pad + r, iw = j * s.Stride - s.Pad + t;
                    if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W)
                    {
                        continue;
                    }
                    double product = xt[((n * s.C + c) * s.H + ih) * s.W + iw] * wt[((k * s.C + c) * s.R + r) * s.S + t];
                    sum = (float)(sum + product);
                }
                y[((n * s.K + k) * oh + i) * ow + j] = sum;
            }
            return y;
        }
    }
}
