using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// 2-D convolution in NCHW float32 (no bias, groups 1, dilation 1) as three implicit GEMMs.
/// <list type="bullet">
/// <item>Forward: y[K x N·OutH·OutW] = w[K x C·R·S] · im2col(x)[C·R·S x N·OutH·OutW].</item>
/// <item>Backward-data (gather form): dx[C x N·H·W] = wᵀ[C x K·R·S] · col(dy)[K·R·S x N·H·W], where
/// col(dy) holds dy at the output pixel whose window puts tap (r, s) on input pixel (h, w), or 0.
/// The engine splits it by stride phase: the dx pixels with (h + pad, w + pad) ≡ (ph, pw) mod stride are
/// reached only by the taps r ≡ ph, s ≡ pw, so each phase is its own dense GEMM over those taps (one
/// launch per phase; stride 1 has one) and the multiply-adds equal the forward's. Each slab of its reduction
/// is one tap and Depth channels. Every dx element is written exactly once, so no atomics and no prior
/// clearing.</item>
/// <item>Backward-weight: dw[K x C·R·S] = dy[K x N·OutH·OutW] · im2col(x)ᵀ, the long N·OutH·OutW
/// reduction split into chunks whose partial products a second kernel sums in a fixed order
/// (reproducible, no float atomics).</item>
/// </list>
/// All three share one slab loop (<see cref="RunSlabs"/>, over each pass's <see cref="ISlabLoader{TSelf}"/>, with one or
/// two shared buffers) and one tiled GEMM core (<see cref="MultiplyTiles"/>): a group of Tile x Tile threads owns a
/// 2·Tile·Work x Tile·Work output block, stages Depth-deep slices of both operands in shared memory (im2col
/// is never materialised: the loaders compute the gather addresses), and each thread keeps an 8x4 register
/// accumulator (Work rows in each half of the block, Work columns) fed by 16-byte shared-memory reads.
/// Tile, Work and Depth come from <see cref="Device.Tuning"/> as ILGPU specialised values, so each device
/// compiles the one kernel body with them as constants: CUDA runs 16x16 groups (128x64 blocks) with 16-deep
/// slices; the CPU emulator runs one-thread groups (its barriers cost OS-thread handshakes) that each
/// compute an 8x4 block.
/// <para>Backward-data v1 (<see cref="BackwardDataGather(Device, ArrayView{float}, ArrayView{float}, ArrayView{float}, in Conv2dShape)"/>, one GEMM
/// over all taps, channels outer) stays for the kernel bench and for stride 1 when K is not a multiple of
/// Depth: for stride 2 it visits every tap for every dx pixel although only the taps of matching parity
/// contribute (the others gather zeros), about 4x the useful work.</para>
/// </summary>
public static class Conv2d
{
    /// <summary>Largest supported tuning: Tile 16, Work 4 (a 128x64 block per group), Depth 16.</summary>
    private const int MaxTile = 16;
    private const int MaxWork = 4;

    /// <summary>The slab loop of a conv GEMM launch: one shared buffer per operand (the engine's) or two (<see cref="RunSlabs"/>).</summary>
    internal enum Buffering
    {
        Single,
        Double,
    }

    /// <summary>
    /// Shared floats of the A operand: Depth rows of 2·Tile·Work + 4 (the pad keeps the depth-fastest,
    /// i.e. transposed, stores of consecutive threads on different banks and every row 16-byte aligned for
    /// the float4 fragment reads). SharedMemory.Allocate needs a constant, so this is the size for the CUDA
    /// tuning; other tunings use a prefix (<see cref="CheckedTuning"/> checks that they fit).
    /// </summary>
    private const int AFloats = 16 * (2 * MaxTile * MaxWork + 4);

    /// <summary>Shared floats of the B operand: Depth rows of Tile·Work (+ 4 when stored transposed), + 4 for the last fragment read.</summary>
    private const int BFloats = 16 * (MaxTile * MaxWork + 4) + 8;

    /// <summary>
    /// Geometry handed to the kernels, with the products and divisors they would otherwise recompute
    /// per thread. Public only because ILGPU's CPU accelerator emits kernel launch code in another
    /// assembly, which must see every parameter type; callers use <see cref="Conv2dShape"/>.
    /// </summary>
    public struct Args
    {
        public int N, C, H, W, K, R, S, Stride, Pad, OutH, OutW;
        public int HW, OHW, RS, CRS, CHW, KOHW;
        public FastDivisor DivW, DivHW, DivOutW, DivOHW, DivS, DivRS, DivStride;

        /// <summary>Backward-weight only: reduction elements (of N·OutH·OutW) per split, a multiple of Depth.</summary>
        public int Chunk;

        internal Args(in Conv2dShape s, int chunk)
        {
            N = s.N; C = s.C; H = s.H; W = s.W; K = s.K; R = s.R; S = s.S; Stride = s.Stride; Pad = s.Pad;
            OutH = s.OutH; OutW = s.OutW;
            HW = H * W; OHW = OutH * OutW; RS = R * S; CRS = C * RS; CHW = C * HW; KOHW = K * OHW;
            DivW = new(W); DivHW = new(HW); DivOutW = new(OutW); DivOHW = new(OHW);
            DivS = new(S); DivRS = new(RS); DivStride = new(Stride);
            Chunk = chunk;
        }
    }

    /// <summary>
    /// Geometry of one stride phase of backward-data (<see cref="BackwardDataPhaseKernel"/>): the dx pixels
    /// (H0 + stride·i, W0 + stride·j), i &lt; Hp, j &lt; Wp, whose padded coordinates are ≡ (Ph, Pw) mod stride,
    /// and their Rp x Sp taps (Ph + stride·i', Pw + stride·j'). Public for the same reason as <see cref="Args"/>.
    /// </summary>
    public struct PhaseArgs
    {
        public int N, C, H, W, K, S, Stride, OutH, OutW;
        public int HW, OHW, RS;
        public int Ph, Pw, Rp, Sp, RSp;

        /// <summary>The tap index r·S + s of the phase's first tap (Ph, Pw) and its step per phase row (stride·S).</summary>
        public int WTap0, WTapRow;
        public int H0, W0, Hp, Wp, HWp, Qh0, Qw0;
        public FastDivisor DivSp, DivRSp, DivWp, DivHWp;

        internal PhaseArgs(in Conv2dShape s, int ph, int pw)
        {
            N = s.N; C = s.C; H = s.H; W = s.W; K = s.K; S = s.S; Stride = s.Stride; OutH = s.OutH; OutW = s.OutW;
            HW = H * W; OHW = OutH * OutW; RS = s.R * S;
            Ph = ph; Pw = pw;
            WTap0 = ph * S + pw; WTapRow = Stride * S;
            Rp = Count(s.R, ph, Stride); Sp = Count(S, pw, Stride); RSp = Rp * Sp;
            H0 = First(ph, s.Pad, Stride); W0 = First(pw, s.Pad, Stride);
            Hp = Count(H, H0, Stride); Wp = Count(W, W0, Stride); HWp = Hp * Wp;
            Qh0 = (H0 + s.Pad) / Stride; Qw0 = (W0 + s.Pad) / Stride;
            DivSp = new(Math.Max(1, Sp)); DivRSp = new(Math.Max(1, RSp)); DivWp = new(Math.Max(1, Wp)); DivHWp = new(Math.Max(1, HWp));
        }

        /// <summary>How many of 0..length−1 are ≡ first mod stride, first &lt; stride.</summary>
        private static int Count(int length, int first, int stride) => first < length ? (length - 1 - first) / stride + 1 : 0;

        /// <summary>The smallest h ≥ 0 with (h + pad) mod stride = phase.</summary>
        private static int First(int phase, int pad, int stride) => ((phase - pad) % stride + stride) % stride;
    }

    /// <summary>
    /// A thread's 8x4 register accumulator: rows 0-3 are its rows in the first half of the group's block,
    /// rows 4-7 the same rows in the second half; columns are its four consecutive columns. Fields, not an
    /// array, so it stays in registers.
    /// </summary>
    internal struct Acc8x4
    {
        public float A00, A01, A02, A03;
        public float A10, A11, A12, A13;
        public float A20, A21, A22, A23;
        public float A30, A31, A32, A33;
        public float A40, A41, A42, A43;
        public float A50, A51, A52, A53;
        public float A60, A61, A62, A63;
        public float A70, A71, A72, A73;
    }

    /// <summary>
    /// Where a GEMM column sits in the tensor its loader gathers from: a flat offset and a row and a column
    /// that the bounds checks add to (forward: the output pixel's window origin; backward-data: the dx pixel;
    /// backward-weight: the tap (c, r, s), whose offset and (r, s) are added to each output pixel's window).
    /// Decoded with divisions once per kernel into a shared table that the loaders read with one 16-byte
    /// load. A column past the matrix gets rows far below zero, so every bounds check on it fails and it
    /// stages zeros.
    /// </summary>
    [StructLayout(LayoutKind.Sequential, Size = 16)]
    internal struct PixelOrigin
    {
        public int Offset, Row, Column, Unused;

        /// <summary>
        /// The entry of a column, or of one past the matrix (<paramref name="inside"/> false: rows and columns far
        /// below zero). Fields set one by one on a default value, as <see cref="Acc8x4"/>'s are.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static PixelOrigin Of(bool inside, int offset, int row, int column)
        {
            var o = default(PixelOrigin);
            o.Offset = offset;
            o.Row = inside ? row : int.MinValue / 2;
            o.Column = inside ? column : int.MinValue / 2;
            // Not left at its default: a constant lane in the 16-byte shared store ({a, b, c, 0}) is valid PTX, but
            // GPGPU-Sim's PTX parser rejects an immediate inside a vector operand.
            o.Unused = offset;
            return o;
        }
    }

    // ---- kernels ----
    //
    // Each GEMM kernel is a short entry that allocates the shared tiles and calls its pass's body: with one
    // pair of tiles (the engine's default) or, in the "_db" entries, two (double-buffered). A body decodes
    // its column table, builds its pass's slab loader (an ISlabLoader) and hands it to RunSlabs, the one slab
    // loop of every conv GEMM, then stores the accumulator.
    //
    // Staging a Depth-deep slice of an operand: the operand's fast dimension (the one consecutive
    // threads walk, so that global loads coalesce) has F entries, its other dimension S. Thread tid
    // takes fast indices tid % F, tid % F + Threads, ... and, for each, slow indices tid / F,
    // tid / F + max(1, Threads / F), ... With Threads >= F (CUDA) a thread keeps one fast index and
    // steps through S; with Threads < F (the CPU's small groups) it walks several fast indices and all
    // of S. Either way every entry is loaded once per slice, and per-fast-index address decoding is
    // done once per fast index, outside the inner loop.

    /// <summary>y[n,k,oh,ow] = Σ_{c,r,s} x[n,c,oh·stride−pad+r, ow·stride−pad+s] · w[k,c,r,s].</summary>
    [KernelName("conv2d_fwd")]
    [GroupSize(nameof(GroupThreads))]
    internal static void ForwardKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, Args a,
        SpecializedValue<int> tileSize, SpecializedValue<int> workSize, SpecializedValue<int> depthSize)
    {
        var tileA = SharedMemory.Allocate<Float4>(AFloats / 4).Cast<float>();
        var tileB = SharedMemory.Allocate<Float4>(BFloats / 4).Cast<float>();
        Forward(x, w, y, a, tileSize, workSize, depthSize, tileA, tileB, tileA, tileB, twoBuffers: false);
    }

    /// <summary>The forward with two shared buffers: the next slab is staged while this one is multiplied (one barrier per slab).</summary>
    [KernelName("conv2d_fwd_db")]
    [GroupSize(nameof(GroupThreads), MinGroupsPerMultiprocessor = DoubleBufferedGroupsPerSm)]
    internal static void ForwardDoubleBufferedKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, Args a,
        SpecializedValue<int> tileSize, SpecializedValue<int> workSize, SpecializedValue<int> depthSize)
    {
        var tileA0 = SharedMemory.Allocate<Float4>(AFloats / 4).Cast<float>();
        var tileB0 = SharedMemory.Allocate<Float4>(BFloats / 4).Cast<float>();
        var tileA1 = SharedMemory.Allocate<Float4>(AFloats / 4).Cast<float>();
        var tileB1 = SharedMemory.Allocate<Float4>(BFloats / 4).Cast<float>();
        Forward(x, w, y, a, tileSize, workSize, depthSize, tileA0, tileB0, tileA1, tileB1, twoBuffers: true);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Forward(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, Args a, int tile, int work, int slice,
        ArrayView<float> tileA0, ArrayView<float> tileB0, ArrayView<float> tileA1, ArrayView<float> tileB1, bool twoBuffers)
    {
        int blockN = tile * work, blockM = 2 * blockN, threads = tile * tile;
        int tx = Group.IdxX, ty = Group.IdxY, tid = ty * tile + tx;
        int row0 = Grid.IdxY * blockM, col0 = Grid.IdxX * blockN;
        int rows = a.K, cols = a.N * a.OHW;

        // Each column's output pixel decoded once per kernel, not once per slab (see PixelOrigin).
        var origins = SharedMemory.Allocate<PixelOrigin>(MaxTile * MaxWork);
        for (int c = tid; c < blockN; c += threads)
        {
            int p = col0 + c;
            int pn = a.DivOHW.Divide(p), pRem = p - pn * a.OHW, poh = a.DivOutW.Divide(pRem), pow = pRem - poh * a.OutW;
            int ih0 = poh * a.Stride - a.Pad, iw0 = pow * a.Stride - a.Pad;
            origins[c] = PixelOrigin.Of(p < cols, pn * a.CHW + ih0 * a.W + iw0, ih0, iw0);
        }
        Group.Barrier();

        var slabs = new ForwardSlabs(x, w, a, new Staging(tid, threads, blockM, blockN, slice, row0, rows));
        var acc = RunSlabs(slabs, 1, (a.CRS + slice - 1) / slice, severalRuns: false, twoBuffers, tileA0, tileB0, tileA1, tileB1, origins,
            tx, ty, tile, work, slice, blockN);

        // Output column p = (n, oh·OW+ow) lives at n·K·OHW + pixel; row k adds k·OHW.
        StoreImageBlock(y, acc, row0, col0 + tx * work, ty, work, blockN, rows, cols, a.DivOHW, a.KOHW);
    }

    /// <summary>The forward's operands from depth k0 = (c, r, s) on: A = w, B = im2col(x) read through the pixel table.</summary>
    private struct ForwardSlabs(ArrayView<float> x, ArrayView<float> w, Args a, Staging g) : ISlabLoader<ForwardSlabs>
    {
        private readonly ArrayView<float> _x = x, _w = w;
        private readonly Args _a = a;
        private readonly Staging _g = g;
        private int _k0;

        public readonly ForwardSlabs Next() => this with { _k0 = _k0 + _g.Slice };

        public readonly ForwardSlabs NextRun() => this;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Stage(ArrayView<float> tileA, ArrayView<float> tileB, ArrayView<PixelOrigin> origins)
        {
            int slice = _g.Slice, blockM = _g.BlockM, blockN = _g.BlockN, threads = _g.Threads, tid = _g.Tid, k0 = _k0, depth = _a.CRS;
            int aStep = SlowStep(threads, slice), bStep = SlowStep(threads, blockN);
            // A = w [K x C·R·S], fast along the depth (contiguous in w).
            int kk = tid % slice;
            do
            {
                int q = k0 + kk;
                bool qInside = q < depth;
                for (int m = tid / slice; m < blockM; m += aStep)
                {
                    int gm = _g.Row0 + m;
                    tileA[kk * (blockM + 4) + m] = LoadOrZero(_w, gm * depth + q, qInside & gm < _g.Rows);
                }
                kk += threads;
            }
            while (threads < slice && kk < slice);
            // B = im2col(x) [C·R·S x N·OH·OW], fast along the output pixels (contiguous rows of x).
            int col = tid % blockN;
            do
            {
                PixelOrigin o = origins[col];
                for (int kq = tid / blockN; kq < slice; kq += bStep)
                {
                    int qq = k0 + kq;
                    int c = _a.DivRS.Divide(qq), rs = qq - c * _a.RS, r = _a.DivS.Divide(rs), s = rs - r * _a.S;
                    int ih = o.Row + r, iw = o.Column + s;
                    bool inside = qq < depth & (uint)ih < (uint)_a.H & (uint)iw < (uint)_a.W;
                    tileB[kq * blockN + col] = LoadOrZero(_x, o.Offset + (c * _a.H + r) * _a.W + s, inside);
                }
                col += threads;
            }
            while (threads < blockN && col < blockN);
        }
    }

    /// <summary>dx[n,c,h,w] = Σ_{k,r,s} dy[n,k,oh,ow] · w[k,c,r,s] over the (oh, ow) with oh·stride−pad+r = h, ow·stride−pad+s = w.</summary>
    [KernelName("conv2d_bwd_data")]
    [GroupSize(nameof(GroupThreads))]
    internal static void BackwardDataKernel(ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, Args a,
        SpecializedValue<int> tileSize, SpecializedValue<int> workSize, SpecializedValue<int> depthSize)
    {
        var tileA = SharedMemory.Allocate<Float4>(AFloats / 4).Cast<float>();
        var tileB = SharedMemory.Allocate<Float4>(BFloats / 4).Cast<float>();
        int tile = tileSize, work = workSize, slice = depthSize, blockN = tile * work, blockM = 2 * blockN, threads = tile * tile;
        int tx = Group.IdxX, ty = Group.IdxY, tid = ty * tile + tx;
        int row0 = Grid.IdxY * blockM, col0 = Grid.IdxX * blockN;
        int rows = a.C, cols = a.N * a.HW;

        // Each column's dx pixel decoded once per kernel, not once per slab (see PixelOrigin).
        var origins = SharedMemory.Allocate<PixelOrigin>(MaxTile * MaxWork);
        for (int c = tid; c < blockN; c += threads)
        {
            int p = col0 + c;
            int pn = a.DivHW.Divide(p), pRem = p - pn * a.HW, ph = a.DivW.Divide(pRem), pw = pRem - ph * a.W;
            origins[c] = PixelOrigin.Of(p < cols, pn * a.KOHW, ph + a.Pad, pw + a.Pad);
        }
        Group.Barrier();

        var slabs = new GatherSlabs(dy, w, a, new Staging(tid, threads, blockM, blockN, slice, row0, rows));
        var acc = RunSlabs(slabs, 1, (a.K * a.RS + slice - 1) / slice, severalRuns: false, twoBuffers: false, tileA, tileB, tileA, tileB, origins,
            tx, ty, tile, work, slice, blockN);

        // Output column p = (n, h·W+w) lives at n·C·HW + pixel; row c adds c·HW.
        StoreImageBlock(dx, acc, row0, col0 + tx * work, ty, work, blockN, rows, cols, a.DivHW, a.CHW);
    }

    /// <summary>Backward-data v1's operands from depth k0 = (k, r, s) on: A = wᵀ, B = col(dy) over every tap.</summary>
    private struct GatherSlabs(ArrayView<float> dy, ArrayView<float> w, Args a, Staging g) : ISlabLoader<GatherSlabs>
    {
        private readonly ArrayView<float> _dy = dy, _w = w;
        private readonly Args _a = a;
        private readonly Staging _g = g;
        private int _k0;

        public readonly GatherSlabs Next() => this with { _k0 = _k0 + _g.Slice };

        public readonly GatherSlabs NextRun() => this;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Stage(ArrayView<float> tileA, ArrayView<float> tileB, ArrayView<PixelOrigin> origins)
        {
            int slice = _g.Slice, blockM = _g.BlockM, blockN = _g.BlockN, threads = _g.Threads, tid = _g.Tid, k0 = _k0, depth = _a.K * _a.RS;
            int aStep = SlowStep(threads, slice), bStep = SlowStep(threads, blockN);
            // A = wᵀ [C x K·R·S]: A[c, (k,r,s)] = w[k,c,r,s], fast along the depth (r, s contiguous in w).
            int kk = tid % slice;
            do
            {
                int j = k0 + kk;
                bool jInside = j < depth;
                int jk = _a.DivRS.Divide(j), jrs = j - jk * _a.RS;
                for (int m = tid / slice; m < blockM; m += aStep)
                {
                    int gc = _g.Row0 + m;
                    tileA[kk * (blockM + 4) + m] = LoadOrZero(_w, (jk * _a.C + gc) * _a.RS + jrs, jInside & gc < _g.Rows);
                }
                kk += threads;
            }
            while (threads < slice && kk < slice);
            // B = col(dy) [K·R·S x N·H·W], fast along the input pixels.
            int col = tid % blockN;
            do
            {
                PixelOrigin o = origins[col];
                for (int kq = tid / blockN; kq < slice; kq += bStep)
                {
                    int jj = k0 + kq;
                    int k = _a.DivRS.Divide(jj), rs = jj - k * _a.RS, r = _a.DivS.Divide(rs), s = rs - r * _a.S;
                    int th = o.Row - r, tw = o.Column - s;
                    // th or tw < 0 gives a meaningless quotient; the mask drops it.
                    int oh = _a.DivStride.Divide(th), ow = _a.DivStride.Divide(tw);
                    bool inside = jj < depth & th >= 0 & tw >= 0
                        & oh * _a.Stride == th & ow * _a.Stride == tw & oh < _a.OutH & ow < _a.OutW;
                    tileB[kq * blockN + col] = LoadOrZero(_dy, o.Offset + (k * _a.OutH + oh) * _a.OutW + ow, inside);
                }
                col += threads;
            }
            while (threads < blockN && col < blockN);
        }
    }

    /// <summary>
    /// Backward-data of one stride phase (the engine's form for every stride): the dx pixels (h, w) with
    /// (h + pad) mod stride = (Ph, Pw) meet only the taps r = Ph + stride·i, s = Pw + stride·j, each at output
    /// pixel ((h + pad) / stride − i, (w + pad) / stride − j), so dx_phase[C x N·Hp·Wp] =
    /// w_phaseᵀ[C x Rp·Sp·K] · col(dy)[Rp·Sp·K x N·Hp·Wp] is a dense GEMM with no parity-rejected taps. Stride 1
    /// is one phase holding every tap (the gather form of <see cref="BackwardDataKernel"/>).
    /// Each slab of the reduction is one tap (i, j) and Depth channels (CUTLASS's implicit-GEMM order within a slab),
    /// so the tap is decoded once per slab in uniform registers rather than per staged element, and each element's
    /// address is its column's (or row's) base plus kq times a stride. The slabs go over every tap for one block of
    /// Depth channels, then the next block, so consecutive slabs reread the same dy channels at neighbouring pixels
    /// (cache hits) rather than every channel once per tap. The last block is padded with zeros when K is not a
    /// multiple of Depth (never in ResNet at width 16 and up).
    /// A phase without taps (Rp or Sp 0, e.g. the odd phases of a 1x1/2) writes zeros.
    /// </summary>
    [KernelName("conv2d_bwd_data_phase")]
    [GroupSize(nameof(GroupThreads))]
    internal static void BackwardDataPhaseKernel(ArrayView<float> dy, ArrayView<float> wt, ArrayView<float> dx, PhaseArgs a,
        SpecializedValue<int> tileSize, SpecializedValue<int> workSize, SpecializedValue<int> depthSize)
    {
        var tileA = SharedMemory.Allocate<Float4>(AFloats / 4).Cast<float>();
        var tileB = SharedMemory.Allocate<Float4>(BFloats / 4).Cast<float>();
        BackwardDataPhase(dy, wt, dx, a, tileSize, workSize, depthSize, tileA, tileB, tileA, tileB, twoBuffers: false);
    }

    /// <summary>Backward-data by stride phase with two shared buffers (one barrier per slab).</summary>
    [KernelName("conv2d_bwd_data_phase_db")]
    [GroupSize(nameof(GroupThreads), MinGroupsPerMultiprocessor = DoubleBufferedGroupsPerSm)]
    internal static void BackwardDataPhaseDoubleBufferedKernel(ArrayView<float> dy, ArrayView<float> wt, ArrayView<float> dx, PhaseArgs a,
        SpecializedValue<int> tileSize, SpecializedValue<int> workSize, SpecializedValue<int> depthSize)
    {
        var tileA0 = SharedMemory.Allocate<Float4>(AFloats / 4).Cast<float>();
        var tileB0 = SharedMemory.Allocate<Float4>(BFloats / 4).Cast<float>();
        var tileA1 = SharedMemory.Allocate<Float4>(AFloats / 4).Cast<float>();
        var tileB1 = SharedMemory.Allocate<Float4>(BFloats / 4).Cast<float>();
        BackwardDataPhase(dy, wt, dx, a, tileSize, workSize, depthSize, tileA0, tileB0, tileA1, tileB1, twoBuffers: true);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BackwardDataPhase(ArrayView<float> dy, ArrayView<float> wt, ArrayView<float> dx, PhaseArgs a, int tile, int work, int slice,
        ArrayView<float> tileA0, ArrayView<float> tileB0, ArrayView<float> tileA1, ArrayView<float> tileB1, bool twoBuffers)
    {
        int blockN = tile * work, blockM = 2 * blockN, threads = tile * tile;
        int tx = Group.IdxX, ty = Group.IdxY, tid = ty * tile + tx;
        int row0 = Grid.IdxY * blockM, col0 = Grid.IdxX * blockN;
        int rows = a.C, cols = a.N * a.HWp;

        // Each column's dx pixel decoded once per kernel, not once per slab (see PixelOrigin).
        var origins = SharedMemory.Allocate<PixelOrigin>(MaxTile * MaxWork);
        for (int c = tid; c < blockN; c += threads)
        {
            int p = col0 + c;
            int pn = a.DivHWp.Divide(p), pRem = p - pn * a.HWp, pi = a.DivWp.Divide(pRem), pj = pRem - pi * a.Wp;
            origins[c] = PixelOrigin.Of(p < cols, pn * a.K * a.OHW, a.Qh0 + pi, a.Qw0 + pj);
        }
        Group.Barrier();

        var slabs = new PhaseSlabs(dy, wt, a, new Staging(tid, threads, blockM, blockN, slice, row0, rows));
        var acc = RunSlabs(slabs, (a.K + slice - 1) / slice, a.RSp, severalRuns: true, twoBuffers, tileA0, tileB0, tileA1, tileB1, origins,
            tx, ty, tile, work, slice, blockN);

        // Column p = (n, i·Wp + j) is dx pixel (H0 + stride·i, W0 + stride·j) of image n; row c adds c·HW.
        int cb = col0 + tx * work;
        int c0 = PhaseColumn(cb, 0, work, cols, a);
        int c1 = PhaseColumn(cb + 1, 1, work, cols, a);
        int c2 = PhaseColumn(cb + 2, 2, work, cols, a);
        int c3 = PhaseColumn(cb + 3, 3, work, cols, a);
        StoreBlock(dx, acc, row0 + ty * work, row0 + blockN + ty * work, work, rows, a.HW, c0, c1, c2, c3);
    }

    /// <summary>
    /// A stride phase's operands, one run per block of Depth channels and one slab per tap: positioned on tap (i, j) and channels kb .. kb + Depth − 1.
    /// A = w_phaseᵀ, read from the tap-major copy wt (<see cref="WeightTapsFirstKernel"/>): A[c, kb + kq] = wt[(tap·K + kb + kq)·C + c],
    /// so a warp's A loads are consecutive floats; B = col(dy): B[kb + kq, col] = dy[n, kb + kq, oh, ow].
    /// </summary>
    private struct PhaseSlabs(ArrayView<float> dy, ArrayView<float> wt, PhaseArgs a, Staging g) : ISlabLoader<PhaseSlabs>
    {
        private readonly ArrayView<float> _dy = dy, _wt = wt;
        private readonly PhaseArgs _a = a;
        private readonly Staging _g = g;
        private int _kb, _i, _j;

        /// <summary>The same Depth channels at the next tap (row-major over the phase's Rp x Sp taps).</summary>
        public readonly PhaseSlabs Next()
        {
            var next = this;
            next._j++;
            if (next._j == _a.Sp)
            {
                next._j = 0;
                next._i++;
            }
            return next;
        }

        /// <summary>The next Depth channels at the first tap.</summary>
        public readonly PhaseSlabs NextRun() => this with { _kb = _kb + _g.Slice, _i = 0, _j = 0 };

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Stage(ArrayView<float> tileA, ArrayView<float> tileB, ArrayView<PixelOrigin> origins)
        {
            int slice = _g.Slice, blockM = _g.BlockM, blockN = _g.BlockN, threads = _g.Threads, tid = _g.Tid, kb = _kb;
            int aStep = SlowStep(threads, blockM), bStep = SlowStep(threads, blockN);
            // The tap (Ph + stride·i, Pw + stride·j) as r·S + s; A is fast along the rows c, contiguous in wt.
            int tap = _a.WTap0 + _i * _a.WTapRow + _j * _a.Stride;
            int m = tid % blockM;
            do
            {
                int gc = _g.Row0 + m;
                bool rowInside = gc < _g.Rows;
                int wRow = (tap * _a.K + kb) * _a.C + gc;
                for (int kq = tid / blockM; kq < slice; kq += aStep)
                {
                    tileA[kq * (blockM + 4) + m] = LoadOrZero(_wt, wRow + kq * _a.C, rowInside & kb + kq < _a.K);
                }
                m += threads;
            }
            while (threads < blockM && m < blockM);
            // B is fast along the phase's dx pixels.
            int col = tid % blockN;
            do
            {
                PixelOrigin o = origins[col];
                int oh = o.Row - _i, ow = o.Column - _j;
                bool pixelInside = (uint)oh < (uint)_a.OutH & (uint)ow < (uint)_a.OutW;
                int dyColumn = o.Offset + kb * _a.OHW + oh * _a.OutW + ow;
                for (int kq = tid / blockN; kq < slice; kq += bStep)
                {
                    tileB[kq * blockN + col] = LoadOrZero(_dy, dyColumn + kq * _a.OHW, pixelInside & kb + kq < _a.K);
                }
                col += threads;
            }
            while (threads < blockN && col < blockN);
        }
    }

    /// <summary>
    /// partial[z,k,(c,r,s)] = Σ over reduction index p = (n,oh,ow) in split z's chunk of
    /// dy[n,k,oh,ow] · x[n,c,oh·stride−pad+r, ow·stride−pad+s]. Grid z is the split.
    /// </summary>
    [KernelName("conv2d_bwd_weight")]
    [GroupSize(nameof(GroupThreads))]
    internal static void BackwardWeightKernel(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> partial, Args a,
        SpecializedValue<int> tileSize, SpecializedValue<int> workSize, SpecializedValue<int> depthSize)
    {
        var tileA = SharedMemory.Allocate<Float4>(AFloats / 4).Cast<float>();
        var tileB = SharedMemory.Allocate<Float4>(BFloats / 4).Cast<float>();
        BackwardWeight(x, dy, partial, a, tileSize, workSize, depthSize, tileA, tileB, tileA, tileB, twoBuffers: false);
    }

    /// <summary>Backward-weight with two shared buffers (one barrier per slab).</summary>
    [KernelName("conv2d_bwd_weight_db")]
    [GroupSize(nameof(GroupThreads), MinGroupsPerMultiprocessor = DoubleBufferedGroupsPerSm)]
    internal static void BackwardWeightDoubleBufferedKernel(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> partial, Args a,
        SpecializedValue<int> tileSize, SpecializedValue<int> workSize, SpecializedValue<int> depthSize)
    {
        var tileA0 = SharedMemory.Allocate<Float4>(AFloats / 4).Cast<float>();
        var tileB0 = SharedMemory.Allocate<Float4>(BFloats / 4).Cast<float>();
        var tileA1 = SharedMemory.Allocate<Float4>(AFloats / 4).Cast<float>();
        var tileB1 = SharedMemory.Allocate<Float4>(BFloats / 4).Cast<float>();
        BackwardWeight(x, dy, partial, a, tileSize, workSize, depthSize, tileA0, tileB0, tileA1, tileB1, twoBuffers: true);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BackwardWeight(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> partial, Args a, int tile, int work, int slice,
        ArrayView<float> tileA0, ArrayView<float> tileB0, ArrayView<float> tileA1, ArrayView<float> tileB1, bool twoBuffers)
    {
        int blockN = tile * work, blockM = 2 * blockN, threads = tile * tile;
        int tx = Group.IdxX, ty = Group.IdxY, tid = ty * tile + tx;
        int row0 = Grid.IdxY * blockM, col0 = Grid.IdxX * blockN;
        int rows = a.K, cols = a.CRS;
        int pBegin = Grid.IdxZ * a.Chunk;
        int pEnd = XMin(pBegin + a.Chunk, a.N * a.OHW);

        // Each column's tap (c, r, s) decoded once per kernel, not once per slab and element (see PixelOrigin).
        var taps = SharedMemory.Allocate<PixelOrigin>(MaxTile * MaxWork);
        for (int m = tid; m < blockN; m += threads)
        {
            int q = col0 + m;
            int c = a.DivRS.Divide(q), rs = q - c * a.RS, r = a.DivS.Divide(rs), s = rs - r * a.S;
            taps[m] = PixelOrigin.Of(q < cols, (c * a.H + r) * a.W + s, r, s);
        }
        Group.Barrier();

        var slabs = new WeightSlabs(x, dy, a, new Staging(tid, threads, blockM, blockN, slice, row0, rows), pBegin, pEnd);
        var acc = RunSlabs(slabs, 1, (pEnd - pBegin + slice - 1) / slice, severalRuns: false, twoBuffers, tileA0, tileB0, tileA1, tileB1, taps,
            tx, ty, tile, work, slice, blockN + 4);

        // Split z's slice starts at z·K·CRS; row k adds k·CRS; column q adds q.
        int splitBase = Grid.IdxZ * rows * cols;
        int cb = col0 + tx * work;
        int c0 = WeightColumn(cb, 0, work, cols, splitBase);
        int c1 = WeightColumn(cb + 1, 1, work, cols, splitBase);
        int c2 = WeightColumn(cb + 2, 2, work, cols, splitBase);
        int c3 = WeightColumn(cb + 3, 3, work, cols, splitBase);
        StoreBlock(partial, acc, row0 + ty * work, row0 + blockN + ty * work, work, rows, cols, c0, c1, c2, c3);
    }

    /// <summary>
    /// Backward-weight's operands from reduction index k0 = (n, oh, ow) on, below pEnd. Both are staged with the
    /// reduction index fastest across threads: consecutive threads take consecutive output pixels p, which are
    /// contiguous in dy and contiguous (or stride-apart) in x, so both gathers coalesce. Each thread decodes its
    /// p once per slab and shares it between its A values (rows k) and its B values (columns (c, r, s), from the
    /// tap table).
    /// </summary>
    private struct WeightSlabs(ArrayView<float> x, ArrayView<float> dy, Args a, Staging g, int pBegin, int pEnd) : ISlabLoader<WeightSlabs>
    {
        private readonly ArrayView<float> _x = x, _dy = dy;
        private readonly Args _a = a;
        private readonly Staging _g = g;
        private readonly int _pEnd = pEnd;
        private int _k0 = pBegin;

        public readonly WeightSlabs Next() => this with { _k0 = _k0 + _g.Slice };

        public readonly WeightSlabs NextRun() => this;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void Stage(ArrayView<float> tileA, ArrayView<float> tileB, ArrayView<PixelOrigin> taps)
        {
            int slice = _g.Slice, blockM = _g.BlockM, blockN = _g.BlockN, threads = _g.Threads, tid = _g.Tid, k0 = _k0;
            int step = SlowStep(threads, slice);
            int kk = tid % slice;
            do
            {
                int p = k0 + kk;
                bool pInside = p < _pEnd;
                int n = _a.DivOHW.Divide(p), pixel = p - n * _a.OHW, oh = _a.DivOutW.Divide(pixel), ow = pixel - oh * _a.OutW;
                int ih0 = oh * _a.Stride - _a.Pad, iw0 = ow * _a.Stride - _a.Pad;
                int dyPixel = n * _a.KOHW + pixel, xWindow = n * _a.CHW + ih0 * _a.W + iw0;
                for (int m = tid / slice; m < blockM; m += step)
                {
                    // A = dy [K x N·OH·OW]: A[k, p] = dy[n,k,pixel].
                    int gk = _g.Row0 + m;
                    tileA[kk * (blockM + 4) + m] = LoadOrZero(_dy, dyPixel + gk * _a.OHW, pInside & gk < _g.Rows);
                }
                for (int m = tid / slice; m < blockN; m += step)
                {
                    // B = im2col(x)ᵀ [N·OH·OW x C·R·S]: B[p, (c,r,s)] = x[n, c, oh·stride−pad+r, ow·stride−pad+s].
                    PixelOrigin t = taps[m];
                    int ih = ih0 + t.Row, iw = iw0 + t.Column;
                    bool inside = pInside & (uint)ih < (uint)_a.H & (uint)iw < (uint)_a.W;
                    tileB[kk * (blockN + 4) + m] = LoadOrZero(_x, xWindow + t.Offset, inside);
                }
                kk += threads;
            }
            while (threads < slice && kk < slice);
        }
    }

    /// <summary>dw[i] = Σ_z partial[z·length + i], always in increasing z, so results are reproducible (grid-stride over i).</summary>
    [KernelName("conv2d_bwd_weight_reduce")]
    internal static void ReduceSplitsKernel(Index1D index, ArrayView<float> partial, ArrayView<float> dw, int length, int splits, int stride)
    {
        for (int i = index; i < length; i += stride)
        {
            float sum = 0f;
            for (int z = 0; z < splits; z++)
            {
                sum += partial[z * length + i];
            }
            dw[i] = sum;
        }
    }

    /// <summary>
    /// wt[(rs·K + k)·C + c] = w[(k·C + c)·RS + rs]: the filters tap-major with the input channel fastest, which
    /// backward-data by phase reads as its A operand so that a warp's loads are consecutive floats (w itself has
    /// them R·S floats apart). Grid-stride over wt, so the writes coalesce; w is small and read once.
    /// </summary>
    [KernelName("conv2d_weight_taps_first")]
    internal static void WeightTapsFirstKernel(Index1D index, ArrayView<float> w, ArrayView<float> wt, FastDivisor divC, FastDivisor divK,
        int rs, int length, int stride)
    {
        for (int i = index; i < length; i += stride)
        {
            int rest = divC.Divide(i), c = i - rest * divC.Value, tap = divK.Divide(rest), k = rest - tap * divK.Value;
            wt[i] = w[(k * divC.Value + c) * rs + tap];
        }
    }

    // ---- GEMM core shared by the kernels ----

    /// <summary>
    /// Groups per multiprocessor the double-buffered kernels are compiled for (their launch bounds): with 256-thread
    /// groups, 4 caps ptxas at 64 registers, the 50% occupancy the single-buffered kernels reach on sm_90 unbounded.
    /// </summary>
    private const int DoubleBufferedGroupsPerSm = 4;

    /// <summary>What every slab loader needs of its group: its thread, the group's threads, block shape, slab depth, first row and the matrix's rows.</summary>
    private readonly struct Staging(int tid, int threads, int blockM, int blockN, int slice, int row0, int rows)
    {
        public readonly int Tid = tid, Threads = threads, BlockM = blockM, BlockN = blockN, Slice = slice, Row0 = row0, Rows = rows;
    }

    /// <summary>
    /// One conv pass's operand loader, positioned on one slab (Depth steps of the reduction): <see cref="Stage"/> writes
    /// the slab's A tile (Depth rows of BlockM + 4 floats) and B tile into the buffers it is given. The reduction is a
    /// sequence of runs of equal length (backward-data by phase: one run per tap; the other passes: one run);
    /// <see cref="Next"/> is the loader on the following slab of the same run, <see cref="NextRun"/> on the first slab
    /// of the next run, so that work done once per run (a tap's decode) stays outside the inner slab loop. Global views
    /// and geometry are fields; shared views (tiles, the decode table) are parameters, because a view kept in a struct
    /// field loses ILGPU's shared address space (generic loads).
    /// </summary>
    private interface ISlabLoader<TSelf> where TSelf : struct, ISlabLoader<TSelf>
    {
        void Stage(ArrayView<float> tileA, ArrayView<float> tileB, ArrayView<PixelOrigin> table);

        TSelf Next();

        TSelf NextRun();
    }

    /// <summary>
    /// The one slab loop of every conv GEMM: <paramref name="runs"/> runs of <paramref name="perRun"/> slabs from
    /// <paramref name="slabs"/>, multiplied into a fresh accumulator by <see cref="MultiplyTiles"/>. With one buffer
    /// (tileA1, tileB1 are tileA0, tileB0): stage, barrier, multiply, barrier, in a slab loop inside a run loop (without
    /// the run loop when <paramref name="severalRuns"/> is false, a constant at every call site, and runs is 1). With
    /// two: the next slab is staged into the other buffer before this slab is multiplied, one barrier per slab, over
    /// the runs' slabs in one sequence; the loop is written out for a pair of slabs so that each buffer's fragment
    /// views stay loop-invariant (a view reassigned in a loop loses the shared address space). The B tile's rows are
    /// <paramref name="strideB"/> floats apart (Tile·Work, + 4 when its loader stores it transposed).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Acc8x4 RunSlabs<T>(T slabs, int runs, int perRun, bool severalRuns, bool twoBuffers,
        ArrayView<float> tileA0, ArrayView<float> tileB0, ArrayView<float> tileA1, ArrayView<float> tileB1, ArrayView<PixelOrigin> table,
        int tx, int ty, int tile, int work, int slice, int strideB)
        where T : struct, ISlabLoader<T>
    {
        int strideA = 2 * tile * work + 4;
        var acc = default(Acc8x4);
        var rows0 = FragmentView(tileA0, ty, work);
        var cols0 = FragmentView(tileB0, tx, work);
        if (!twoBuffers)
        {
            if (!severalRuns)
            {
                // One run (every pass but backward-data by phase): the plain slab loop, with no run loop around it.
                return SingleBufferedRun(acc, slabs, perRun, rows0, cols0, tileA0, tileB0, table, tx, ty, tile, work, slice, strideA, strideB);
            }
            for (int run = 0; run < runs; run++)
            {
                acc = SingleBufferedRun(acc, slabs, perRun, rows0, cols0, tileA0, tileB0, table, tx, ty, tile, work, slice, strideA, strideB);
                slabs = slabs.NextRun();
            }
            return acc;
        }

        var rows1 = FragmentView(tileA1, ty, work);
        var cols1 = FragmentView(tileB1, tx, work);
        int count = runs * perRun, inRun = 0;
        if (count > 0)
        {
            slabs.Stage(tileA0, tileB0, table);
        }
        Group.Barrier();
        for (int i = 0; i < count; i += 2)
        {
            // Buffer 1 was last read two slabs ago, before a barrier; buffer 0 holds slab i.
            slabs = Following(slabs, ref inRun, perRun);
            if (i + 1 < count)
            {
                slabs.Stage(tileA1, tileB1, table);
            }
            acc = MultiplyTiles(acc, rows0, cols0, tileA0, tileB0, tx, ty, tile, work, slice, strideA, strideB);
            Group.Barrier();
            if (i + 1 < count)
            {
                slabs = Following(slabs, ref inRun, perRun);
                if (i + 2 < count)
                {
                    slabs.Stage(tileA0, tileB0, table);
                }
                acc = MultiplyTiles(acc, rows1, cols1, tileA1, tileB1, tx, ty, tile, work, slice, strideA, strideB);
                Group.Barrier();
            }
        }
        return acc;
    }

    /// <summary>One run's <paramref name="perRun"/> slabs through one buffer: stage, barrier, multiply, barrier.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Acc8x4 SingleBufferedRun<T>(Acc8x4 acc, T slab, int perRun, ArrayView<Float4> rows, ArrayView<Float4> cols,
        ArrayView<float> tileA, ArrayView<float> tileB, ArrayView<PixelOrigin> table, int tx, int ty, int tile, int work, int slice, int strideA, int strideB)
        where T : struct, ISlabLoader<T>
    {
        for (int i = 0; i < perRun; i++)
        {
            slab.Stage(tileA, tileB, table);
            Group.Barrier();
            acc = MultiplyTiles(acc, rows, cols, tileA, tileB, tx, ty, tile, work, slice, strideA, strideB);
            Group.Barrier();
            slab = slab.Next();
        }
        return acc;
    }

    /// <summary>The slab after <paramref name="slab"/>, the <paramref name="inRun"/>-th of its run: the next in the run, or the next run's first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Following<T>(T slab, ref int inRun, int perRun) where T : struct, ISlabLoader<T>
    {
        inRun++;
        if (inRun < perRun)
        {
            return slab.Next();
        }
        inRun = 0;
        return slab.NextRun();
    }

    /// <summary>
    /// Loads per thread along an operand's slow dimension: Threads / F when the group is at least as wide
    /// as the fast dimension F (each thread then keeps one fast index), else 1.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int SlowStep(int threads, int fast) => threads > fast ? threads / fast : 1;

    /// <summary>
    /// acc += A_tile · B_tile over one slice of <paramref name="slice"/> depth steps, 32 multiply-adds per step
    /// and thread. Thread (tx, ty) owns rows ty·Work .. +Work−1 of each half of the group's 2·Tile·Work rows and
    /// columns tx·Work .. +Work−1. With Work 4 each depth step reads its rows as two float4 and its columns as one
    /// (LDS.128; a warp's two rows of threads read two A addresses, a broadcast, and consecutive B float4s, no
    /// bank conflict) from the fragment views <paramref name="rows"/> (both halves: the second is Tile float4s
    /// further on) and <paramref name="cols"/> (<see cref="FragmentView"/>, taken once before a kernel's slab
    /// loop), so every address inside is one of two bases plus a constant: Tile, Work and Depth are specialised
    /// to constants at load time.
    /// The views are plain locals and parameters, not fields of a struct, which keeps them in ILGPU's shared
    /// address space (LDS rather than generic loads). The sixteen depth steps of a slice are written out (ILGPU
    /// does not unroll, and ptxas left a 4-iteration loop with an address computation per load), so this path
    /// takes slices of exactly 16 (the CUDA and CPU tunings); other tunings (tests') read scalars.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Acc8x4 MultiplyTiles(Acc8x4 acc, ArrayView<Float4> rows, ArrayView<Float4> cols,
        ArrayView<float> tileA, ArrayView<float> tileB, int tx, int ty, int tile, int work, int slice, int strideA, int strideB)
    {
        if (work == 4 && slice == 16)
        {
            // Sixteen steps written out, no loop: every offset is a constant that ptxas folds into the LDS.128
            // instructions, and the views are never reassigned (a view carried around a loop loses ILGPU's
            // shared address space and its loads become generic).
            int sa = strideA / 4, sb = strideB / 4, hi = tile * work / 4;
            acc = Fma(acc, rows[0 * sa], rows[0 * sa + hi], cols[0 * sb]);
            acc = Fma(acc, rows[1 * sa], rows[1 * sa + hi], cols[1 * sb]);
            acc = Fma(acc, rows[2 * sa], rows[2 * sa + hi], cols[2 * sb]);
            acc = Fma(acc, rows[3 * sa], rows[3 * sa + hi], cols[3 * sb]);
            acc = Fma(acc, rows[4 * sa], rows[4 * sa + hi], cols[4 * sb]);
            acc = Fma(acc, rows[5 * sa], rows[5 * sa + hi], cols[5 * sb]);
            acc = Fma(acc, rows[6 * sa], rows[6 * sa + hi], cols[6 * sb]);
            acc = Fma(acc, rows[7 * sa], rows[7 * sa + hi], cols[7 * sb]);
            acc = Fma(acc, rows[8 * sa], rows[8 * sa + hi], cols[8 * sb]);
            acc = Fma(acc, rows[9 * sa], rows[9 * sa + hi], cols[9 * sb]);
            acc = Fma(acc, rows[10 * sa], rows[10 * sa + hi], cols[10 * sb]);
            acc = Fma(acc, rows[11 * sa], rows[11 * sa + hi], cols[11 * sb]);
            acc = Fma(acc, rows[12 * sa], rows[12 * sa + hi], cols[12 * sb]);
            acc = Fma(acc, rows[13 * sa], rows[13 * sa + hi], cols[13 * sb]);
            acc = Fma(acc, rows[14 * sa], rows[14 * sa + hi], cols[14 * sb]);
            acc = Fma(acc, rows[15 * sa], rows[15 * sa + hi], cols[15 * sb]);
        }
        else
        {
            int ra = ty * work, rb = tile * work + ty * work, cb = tx * work;
            for (int kk = 0; kk < slice; kk++)
            {
                int row = kk * strideA, col = kk * strideB;
                acc = Fma(acc, Read4(tileA, row + ra), Read4(tileA, row + rb), Read4(tileB, col + cb));
            }
        }
        return acc;
    }

    /// <summary>
    /// A thread's fragments of <paramref name="tile"/> as float4s: with Work 4 its Work floats at
    /// <paramref name="thread"/>·4 are float4 number <paramref name="thread"/> (the index is passed in float4s, not
    /// floats: a division by 4 here made ptxas rebuild each base from the thread index before every load);
    /// unused with other tunings.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ArrayView<Float4> FragmentView(ArrayView<float> tile, int thread, int work)
    {
        var t4 = tile.Cast<Float4>();
        int first = work == 4 ? thread : 0;
        return t4.SubView(first, t4.Length - first);
    }

    /// <summary>Four consecutive floats (with Work &lt; 4 the extra ones stay inside the allocation, <see cref="CheckedTuning"/>, and feed accumulators nobody stores).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float4 Read4(ArrayView<float> tile, int i) => new(tile[i], tile[i + 1], tile[i + 2], tile[i + 3]);

    /// <summary>One rank-1 update of the 8x4 accumulator: rows a (first half) and e (second half), columns b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Acc8x4 Fma(Acc8x4 c, Float4 a, Float4 e, Float4 b)
    {
        float a0 = a.X, a1 = a.Y, a2 = a.Z, a3 = a.W, e0 = e.X, e1 = e.Y, e2 = e.Z, e3 = e.W;
        float b0 = b.X, b1 = b.Y, b2 = b.Z, b3 = b.W;
        c.A00 += a0 * b0;
        c.A01 += a0 * b1;
        c.A02 += a0 * b2;
        c.A03 += a0 * b3;
        c.A10 += a1 * b0;
        c.A11 += a1 * b1;
        c.A12 += a1 * b2;
        c.A13 += a1 * b3;
        c.A20 += a2 * b0;
        c.A21 += a2 * b1;
        c.A22 += a2 * b2;
        c.A23 += a2 * b3;
        c.A30 += a3 * b0;
        c.A31 += a3 * b1;
        c.A32 += a3 * b2;
        c.A33 += a3 * b3;
        c.A40 += e0 * b0;
        c.A41 += e0 * b1;
        c.A42 += e0 * b2;
        c.A43 += e0 * b3;
        c.A50 += e1 * b0;
        c.A51 += e1 * b1;
        c.A52 += e1 * b2;
        c.A53 += e1 * b3;
        c.A60 += e2 * b0;
        c.A61 += e2 * b1;
        c.A62 += e2 * b2;
        c.A63 += e2 * b3;
        c.A70 += e3 * b0;
        c.A71 += e3 * b1;
        c.A72 += e3 * b2;
        c.A73 += e3 * b3;
        return c;
    }

    /// <summary>
    /// Stores a thread's accumulator into an NCHW output whose GEMM columns are (n, pixel) and rows channels: column
    /// p lives at n·<paramref name="imageStride"/> + pixel (pixels per image: <paramref name="pixels"/>), row r adds r·pixels.
    /// The thread's first column is <paramref name="firstColumn"/>, its rows ty·Work .. in each half of the group's block.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreImageBlock(ArrayView<float> y, Acc8x4 acc, int row0, int firstColumn, int ty, int work, int blockN, int rows, int cols,
        FastDivisor pixels, int imageStride)
    {
        int c0 = ImageColumn(firstColumn, 0, work, cols, pixels, imageStride);
        int c1 = ImageColumn(firstColumn + 1, 1, work, cols, pixels, imageStride);
        int c2 = ImageColumn(firstColumn + 2, 2, work, cols, pixels, imageStride);
        int c3 = ImageColumn(firstColumn + 3, 3, work, cols, pixels, imageStride);
        StoreBlock(y, acc, row0 + ty * work, row0 + blockN + ty * work, work, rows, pixels.Value, c0, c1, c2, c3);
    }

    /// <summary>
    /// Offset of GEMM column <paramref name="col"/> in an NCHW output whose columns are (n, pixel):
    /// n·imageStride + pixel, or −1 if this accumulator column is unused or outside the matrix.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int ImageColumn(int col, int j, int work, int cols, FastDivisor pixels, int imageStride)
    {
        if (j >= work || col >= cols)
        {
            return -1;
        }
        int n = pixels.Divide(col);
        return n * imageStride + (col - n * pixels.Value);
    }

    /// <summary>Offset of weight-gradient column <paramref name="col"/> in its split's slice, or −1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int WeightColumn(int col, int j, int work, int cols, int slice)
        => j >= work || col >= cols ? -1 : slice + col;

    /// <summary>Offset in dx of stride-phase column <paramref name="col"/> = (n, i·Wp + j), or −1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int PhaseColumn(int col, int j, int work, int cols, PhaseArgs a)
    {
        if (j >= work || col >= cols)
        {
            return -1;
        }
        int n = a.DivHWp.Divide(col), rem = col - n * a.HWp, pi = a.DivWp.Divide(rem), pj = rem - pi * a.Wp;
        return n * a.C * a.HW + (a.H0 + a.Stride * pi) * a.W + a.W0 + a.Stride * pj;
    }

    /// <summary>Writes the used part of the accumulator: rows rowA .. rowA+Work−1 (accumulator rows 0-3) and rowB .. (rows 4-7); row r adds r·rowStride.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreBlock(ArrayView<float> y, Acc8x4 c, int rowA, int rowB, int work, int rows, int rowStride,
        int c0, int c1, int c2, int c3)
    {
        StoreRow(y, rowA, rows, rowStride, c0, c1, c2, c3, c.A00, c.A01, c.A02, c.A03);
        StoreRow(y, rowB, rows, rowStride, c0, c1, c2, c3, c.A40, c.A41, c.A42, c.A43);
        if (work > 1)
        {
            StoreRow(y, rowA + 1, rows, rowStride, c0, c1, c2, c3, c.A10, c.A11, c.A12, c.A13);
            StoreRow(y, rowB + 1, rows, rowStride, c0, c1, c2, c3, c.A50, c.A51, c.A52, c.A53);
        }
        if (work > 2)
        {
            StoreRow(y, rowA + 2, rows, rowStride, c0, c1, c2, c3, c.A20, c.A21, c.A22, c.A23);
            StoreRow(y, rowB + 2, rows, rowStride, c0, c1, c2, c3, c.A60, c.A61, c.A62, c.A63);
        }
        if (work > 3)
        {
            StoreRow(y, rowA + 3, rows, rowStride, c0, c1, c2, c3, c.A30, c.A31, c.A32, c.A33);
            StoreRow(y, rowB + 3, rows, rowStride, c0, c1, c2, c3, c.A70, c.A71, c.A72, c.A73);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(ArrayView<float> y, int row, int rows, int rowStride,
        int c0, int c1, int c2, int c3, float v0, float v1, float v2, float v3)
    {
        if (row >= rows)
        {
            return;
        }
        int b = row * rowStride;
        if (c0 >= 0) y[b + c0] = v0;
        if (c1 >= 0) y[b + c1] = v1;
        if (c2 >= 0) y[b + c2] = v2;
        if (c3 >= 0) y[b + c3] = v3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int XMin(int a, int b) => a < b ? a : b;

    /// <summary>
    /// v[index] where <paramref name="inside"/>, else 0, without a branch: outside, the load reads v[0] (no
    /// operand is empty) and its value is dropped, so <paramref name="index"/> may then be anything.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float LoadOrZero(ArrayView<float> v, int index, bool inside)
    {
        float value = v[inside ? index : 0];
        return inside ? value : 0f;
    }

    // ---- launchers ----

    /// <summary>y = conv2d(x, w): x [N,C,H,W], w [K,C,R,S], y [N,K,OutH,OutW] (overwritten).</summary>
    /// <exception cref="ArgumentException">The shape is invalid or a buffer's length does not match it.</exception>
    public static void Forward(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, in Conv2dShape s)
        => Forward(dev, x, w, y, s, dev.Tuning);

    /// <summary>
    /// The forward with two shared buffers per operand (<see cref="ForwardDoubleBufferedKernel"/>): the next slab is
    /// staged while this one is multiplied, one barrier per slab. A variant for the kernel bench; the engine runs
    /// <see cref="Forward(Device, ArrayView{float}, ArrayView{float}, ArrayView{float}, in Conv2dShape)"/>.
    /// </summary>
    /// <exception cref="ArgumentException">The shape is invalid or a buffer's length does not match it.</exception>
    public static void ForwardDoubleBuffered(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, in Conv2dShape s)
        => Forward(dev, x, w, y, s, dev.Tuning, Buffering.Double);

    /// <summary>Forward with an explicit tuning (tests run the CUDA-style thread mappings on the CPU with it) and slab loop.</summary>
    internal static void Forward(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, in Conv2dShape s, KernelTuning tuning,
        Buffering buffering = Buffering.Single)
    {
        using var profile = dev.Profile("conv2d_fwd", OpCost.Conv2d(s));
        const string op = "Conv2d.Forward";
        s.Validate();
        ExpectLength(op, "x", x, s.InputLength, s);
        ExpectLength(op, "w", w, s.WeightLength, s);
        ExpectLength(op, "y", y, s.OutputLength, s);
        KernelTuning t = CheckedTuning(dev, tuning);
        var config = Config(t, rows: s.K, cols: s.N * s.OutH * s.OutW, splits: 1);
        if (buffering == Buffering.Double)
        {
            LaunchGemm<Args>(dev, "conv2d_fwd_db", ForwardDoubleBufferedKernel, t, config, x, w, y, new Args(s, 0));
        }
        else
        {
            LaunchGemm<Args>(dev, "conv2d_fwd", ForwardKernel, t, config, x, w, y, new Args(s, 0));
        }
    }

    /// <summary>dx = ∂L/∂x given dy = ∂L/∂y: dy [N,K,OutH,OutW], w [K,C,R,S], dx [N,C,H,W] (every element overwritten).</summary>
    /// <exception cref="ArgumentException">The shape is invalid or a buffer's length does not match it.</exception>
    public static void BackwardData(Device dev, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, in Conv2dShape s)
        => BackwardData(dev, dy, w, dx, s, dev.Tuning);

    /// <summary>Backward-data with an explicit tuning: the version the engine uses (v2, <see cref="BackwardDataPhased(Device, ArrayView{float}, ArrayView{float}, ArrayView{float}, in Conv2dShape)"/>).</summary>
    internal static void BackwardData(Device dev, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, in Conv2dShape s, KernelTuning tuning)
        => BackwardDataPhased(dev, dy, w, dx, s, tuning);

    /// <summary>
    /// Backward-data v1, the gather GEMM over all R·S taps for every dx pixel, channels outer (for stride 2
    /// about 3/4 of them gather zeros). Kept for the kernel bench.
    /// </summary>
    /// <exception cref="ArgumentException">The shape is invalid or a buffer's length does not match it.</exception>
    public static void BackwardDataGather(Device dev, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, in Conv2dShape s)
        => BackwardDataGather(dev, dy, w, dx, s, dev.Tuning);

    /// <summary>Backward-data v1 with an explicit tuning.</summary>
    internal static void BackwardDataGather(Device dev, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, in Conv2dShape s, KernelTuning tuning)
    {
        using var profile = dev.Profile("conv2d_bwd_data", OpCost.Conv2d(s));
        KernelTuning t = CheckedBackwardData(dev, dy, w, dx, s, tuning);
        LaunchGather(dev, dy, w, dx, s, t);
    }

    /// <summary>
    /// Backward-data v2: one launch per stride phase (stride² of them; stride 1 has one, holding every tap) of
    /// <see cref="BackwardDataPhaseKernel"/>, each a dense GEMM over only the taps that reach its pixels, so
    /// the multiply-adds equal the forward's, each slab one tap and Depth channels. At stride 1 with K not a
    /// multiple of the tuning's Depth it runs v1, which then stages fewer slabs.
    /// </summary>
    /// <exception cref="ArgumentException">The shape is invalid or a buffer's length does not match it.</exception>
    public static void BackwardDataPhased(Device dev, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, in Conv2dShape s)
        => BackwardDataPhased(dev, dy, w, dx, s, dev.Tuning);

    /// <summary>Backward-data v2 with two shared buffers per operand (<see cref="BackwardDataPhaseDoubleBufferedKernel"/>); a variant for the kernel bench.</summary>
    /// <exception cref="ArgumentException">The shape is invalid or a buffer's length does not match it.</exception>
    public static void BackwardDataPhasedDoubleBuffered(Device dev, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, in Conv2dShape s)
        => BackwardDataPhased(dev, dy, w, dx, s, dev.Tuning, Buffering.Double);

    /// <summary>Backward-data v2 with an explicit tuning and slab loop.</summary>
    internal static void BackwardDataPhased(Device dev, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, in Conv2dShape s, KernelTuning tuning,
        Buffering buffering = Buffering.Single)
    {
        using var profile = dev.Profile("conv2d_bwd_data", OpCost.Conv2d(s));
        KernelTuning t = CheckedBackwardData(dev, dy, w, dx, s, tuning);
        if (s.Stride == 1 && s.K % t.Depth != 0)
        {
            // One tap per slab pads each tap's K channels up to whole slabs; at stride 1 the gather form (channels
            // outer) reduces the same taps without that padding, so it visits fewer slabs whenever K is not a
            // multiple of Depth (narrow models; never ResNet at width 16 and up).
            LaunchGather(dev, dy, w, dx, s, t);
            return;
        }
        ArrayView<float> wt = WeightTapsFirst(dev, w, s);
        for (int ph = 0; ph < s.Stride; ph++)
        {
            for (int pw = 0; pw < s.Stride; pw++)
            {
                var a = new PhaseArgs(s, ph, pw);
                if (a.HWp == 0)
                {
                    continue; // the image has no pixel of this phase
                }
                var config = Config(t, rows: s.C, cols: s.N * a.HWp, splits: 1);
                if (buffering == Buffering.Double)
                {
                    LaunchGemm<PhaseArgs>(dev, "conv2d_bwd_data_phase_db", BackwardDataPhaseDoubleBufferedKernel, t, config, dy, wt, dx, a);
                }
                else
                {
                    LaunchGemm<PhaseArgs>(dev, "conv2d_bwd_data_phase", BackwardDataPhaseKernel, t, config, dy, wt, dx, a);
                }
            }
        }
    }

    private static KernelTuning CheckedBackwardData(Device dev, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, in Conv2dShape s, KernelTuning tuning)
    {
        const string op = "Conv2d.BackwardData";
        s.Validate();
        ExpectLength(op, "dy", dy, s.OutputLength, s);
        ExpectLength(op, "w", w, s.WeightLength, s);
        ExpectLength(op, "dx", dx, s.InputLength, s);
        return CheckedTuning(dev, tuning);
    }

    /// <summary>
    /// w in the tap-major layout of <see cref="WeightTapsFirstKernel"/>, in the device's workspace: valid until the next
    /// op that takes the workspace, i.e. for this backward-data call.
    /// </summary>
    internal static ArrayView<float> WeightTapsFirst(Device dev, ArrayView<float> w, in Conv2dShape s)
    {
        int length = checked((int)s.WeightLength);
        ArrayView<float> wt = Workspace.For(dev).Get(dev, length);
        var kernel = dev.Kernel("conv2d_weight_taps_first", acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<float>, ArrayView<float>, FastDivisor, FastDivisor, int, int, int>(WeightTapsFirstKernel));
        int threads = dev.GridStrideThreads(length);
        kernel(dev.Stream, threads, w, wt, new FastDivisor(s.C), new FastDivisor(s.K), s.R * s.S, length, threads);
        return wt;
    }

    private static void LaunchGather(Device dev, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, in Conv2dShape s, KernelTuning t)
        => LaunchGemm<Args>(dev, "conv2d_bwd_data", BackwardDataKernel, t, Config(t, rows: s.C, cols: s.N * s.H * s.W, splits: 1), dy, w, dx, new Args(s, 0));

    /// <summary>
    /// Launches one of the conv GEMM kernels under tuning <paramref name="t"/>: loaded once per device (and per group
    /// size when its <see cref="GroupSizeAttribute"/> gives launch bounds, which are compiled in), its Tile, Work and
    /// Depth passed as ILGPU specialised values.
    /// </summary>
    private static void LaunchGemm<TArgs>(Device dev, string name,
        Action<ArrayView<float>, ArrayView<float>, ArrayView<float>, TArgs, SpecializedValue<int>, SpecializedValue<int>, SpecializedValue<int>> kernel,
        KernelTuning t, KernelConfig config, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, TArgs args)
        where TArgs : struct
    {
        var bounds = GroupSizeAttribute.Bounds(kernel.Method, GroupThreads(t));
        string key = bounds.MinNumGroupsPerMultiprocessor is null ? name : $"{name}/{GroupThreads(t)}";
        var launch = dev.Kernel(key, acc => acc.LoadKernel(kernel, bounds));
        launch(dev.Stream, config, a, b, c, args, SpecializedValue.New(t.Tile), SpecializedValue.New(t.Work), SpecializedValue.New(t.Depth));
    }

    /// <summary>dw = ∂L/∂w given x and dy: x [N,C,H,W], dy [N,K,OutH,OutW], dw [K,C,R,S] (overwritten).</summary>
    /// <exception cref="ArgumentException">The shape is invalid or a buffer's length does not match it.</exception>
    public static void BackwardWeight(Device dev, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dw, in Conv2dShape s)
        => BackwardWeight(dev, x, dy, dw, s, splits: 0);

    /// <summary>
    /// Backward-weight with the reduction over N·OutH·OutW cut into <paramref name="splits"/> chunks
    /// (0 = chosen from the shape and the device). More splits give small-K, small-C·R·S layers enough
    /// groups to fill a GPU, at the price of a partial-sum buffer and a second, deterministic, kernel.
    /// </summary>
    internal static void BackwardWeight(Device dev, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dw, in Conv2dShape s, int splits)
        => BackwardWeight(dev, x, dy, dw, s, splits, dev.Tuning);

    /// <summary>Backward-weight with two shared buffers per operand (<see cref="BackwardWeightDoubleBufferedKernel"/>); a variant for the kernel bench.</summary>
    /// <exception cref="ArgumentException">The shape is invalid or a buffer's length does not match it.</exception>
    public static void BackwardWeightDoubleBuffered(Device dev, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dw, in Conv2dShape s)
        => BackwardWeight(dev, x, dy, dw, s, splits: 0, dev.Tuning, Buffering.Double);

    /// <summary>Backward-weight with an explicit split count, tuning and slab loop.</summary>
    internal static void BackwardWeight(Device dev, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dw, in Conv2dShape s, int splits, KernelTuning tuning,
        Buffering buffering = Buffering.Single)
    {
        using var profile = dev.Profile("conv2d_bwd_weight", OpCost.Conv2d(s));
        const string op = "Conv2d.BackwardWeight";
        s.Validate();
        ExpectLength(op, "x", x, s.InputLength, s);
        ExpectLength(op, "dy", dy, s.OutputLength, s);
        ExpectLength(op, "dw", dw, s.WeightLength, s);
        KernelTuning t = CheckedTuning(dev, tuning);

        int reduction = s.N * s.OutH * s.OutW;
        int steps = (reduction + t.Depth - 1) / t.Depth;
        if (splits <= 0)
        {
            splits = ChooseSplits(dev, t, s, steps);
        }
        int stepsPerSplit = (steps + Math.Min(splits, steps) - 1) / Math.Min(splits, steps);
        splits = (steps + stepsPerSplit - 1) / stepsPerSplit; // no empty splits
        int chunk = stepsPerSplit * t.Depth;
        int length = (int)s.WeightLength;

        KernelConfig config = Config(t, rows: s.K, cols: length / s.K, splits);
        var args = new Args(s, chunk);
        void Launch(ArrayView<float> into)
        {
            if (buffering == Buffering.Double)
            {
                LaunchGemm<Args>(dev, "conv2d_bwd_weight_db", BackwardWeightDoubleBufferedKernel, t, config, x, dy, into, args);
            }
            else
            {
                LaunchGemm<Args>(dev, "conv2d_bwd_weight", BackwardWeightKernel, t, config, x, dy, into, args);
            }
        }
        if (splits == 1)
        {
            Launch(dw);
            return;
        }
        if ((long)splits * length > int.MaxValue)
        {
            throw new ArgumentException($"{op}: {splits} partial sums of {length} weights exceed 32-bit indexing ({s}).");
        }
        ArrayView<float> partial = Workspace.For(dev).Get(dev, (long)splits * length);
        Launch(partial);
        var reduce = dev.Kernel("conv2d_bwd_weight_reduce", acc => acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int>(ReduceSplitsKernel));
        int threads = dev.GridStrideThreads(length);
        reduce(dev.Stream, threads, partial, dw, length, splits, threads);
    }

    /// <summary>
    /// Enough splits to give the device about four groups per multiprocessor, and no group a reduction
    /// longer than 1024 slices. (The CPU emulator's tests pass explicit split counts to cover the
    /// split path; its own launches rarely split, as each split costs a partial-sum pass.)
    /// </summary>
    private static int ChooseSplits(Device dev, KernelTuning t, in Conv2dShape s, int steps)
    {
        long blocks = (long)((s.K + 2 * t.Block - 1) / (2 * t.Block)) * ((s.C * s.R * s.S + t.Block - 1) / t.Block);
        long wanted = 4L * Math.Max(1, dev.Accelerator.NumMultiprocessors);
        const int maxSteps = 1024;
        long splits = Math.Max((wanted + blocks - 1) / blocks, (steps + maxSteps - 1) / maxSteps);
        return (int)Math.Clamp(splits, 1, steps);
    }

    /// <summary>Threads in a group of the GEMM kernels: Tile x Tile (<see cref="Config"/>).</summary>
    internal static int GroupThreads(KernelTuning t) => t.GroupSize;

    /// <summary>Groups of Tile x Tile threads, each covering 2·Tile·Work rows and Tile·Work columns of the output.</summary>
    private static KernelConfig Config(KernelTuning t, int rows, int cols, int splits)
        => new(new Index3D((cols + t.Block - 1) / t.Block, (rows + 2 * t.Block - 1) / (2 * t.Block), splits), new Index3D(t.Tile, t.Tile, 1));

    private static KernelTuning CheckedTuning(Device dev, KernelTuning t)
    {
        if (t.Tile < 1 || t.Tile > MaxTile || t.Work < 1 || t.Work > MaxWork || t.Depth < 4 || t.Depth % 4 != 0
            || t.Depth * (2 * t.Block + 4) > AFloats || t.Depth * (t.Block + 4) + 4 > BFloats
            || t.GroupSize > dev.Accelerator.MaxNumThreadsPerGroup)
        {
            throw new InvalidOperationException(
                $"Conv2d: tuning {t} is unsupported: Tile 1..{MaxTile}, Work 1..{MaxWork}, Depth a positive multiple of 4 " +
                $"with Depth·(2·Tile·Work+4) within {AFloats} and Depth·(Tile·Work+4)+4 within {BFloats} shared floats, and Tile² at most {dev.Accelerator.MaxNumThreadsPerGroup} threads on {dev}.");
        }
        return t;
    }

    private static void ExpectLength(string op, string name, ArrayView<float> view, long needed, in Conv2dShape s)
    {
        if (view.Length != needed)
        {
            throw new ArgumentException($"{op}: '{name}' has {view.Length} elements but shape {s} needs {needed}.", name);
        }
    }

    // ---- float64 references ----

    /// <summary>Plain loops in float64: the oracle the kernels are tested against.</summary>
    public static class Reference
    {
        public static double[] Forward(double[] x, double[] w, Conv2dShape s)
        {
            s.Validate();
            int oh = s.OutH, ow = s.OutW;
            var y = new double[s.OutputLength];
            for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
            for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
            {
                double sum = 0;
                for (int c = 0; c < s.C; c++)
                for (int r = 0; r < s.R; r++)
                for (int t = 0; t < s.S; t++)
                {
                    int h = i * s.Stride - s.Pad + r, v = j * s.Stride - s.Pad + t;
                    if (h >= 0 && h < s.H && v >= 0 && v < s.W)
                    {
                        sum += x[((n * s.C + c) * s.H + h) * s.W + v] * w[((k * s.C + c) * s.R + r) * s.S + t];
                    }
                }
                y[((n * s.K + k) * oh + i) * ow + j] = sum;
            }
            return y;
        }

        public static double[] BackwardData(double[] dy, double[] w, Conv2dShape s)
        {
            s.Validate();
            int oh = s.OutH, ow = s.OutW;
            var dx = new double[s.InputLength];
            for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
            for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
            {
                double g = dy[((n * s.K + k) * oh + i) * ow + j];
                for (int c = 0; c < s.C; c++)
                for (int r = 0; r < s.R; r++)
                for (int t = 0; t < s.S; t++)
                {
                    int h = i * s.Stride - s.Pad + r, v = j * s.Stride - s.Pad + t;
                    if (h >= 0 && h < s.H && v >= 0 && v < s.W)
                    {
                        dx[((n * s.C + c) * s.H + h) * s.W + v] += g * w[((k * s.C + c) * s.R + r) * s.S + t];
                    }
                }
            }
            return dx;
        }

        /// <summary>wt[(rs·K + k)·C + c] = w[(k·C + c)·RS + rs], rs = r·S + s.</summary>
        public static double[] WeightTapsFirst(double[] w, Conv2dShape s)
        {
            s.Validate();
            var wt = new double[s.WeightLength];
            for (int k = 0; k < s.K; k++)
            for (int c = 0; c < s.C; c++)
            for (int r = 0; r < s.R; r++)
            for (int t = 0; t < s.S; t++)
            {
                wt[((r * s.S + t) * s.K + k) * s.C + c] = w[((k * s.C + c) * s.R + r) * s.S + t];
            }
            return wt;
        }

        public static double[] BackwardWeight(double[] x, double[] dy, Conv2dShape s)
        {
            s.Validate();
            int oh = s.OutH, ow = s.OutW;
            var dw = new double[s.WeightLength];
            for (int n = 0; n < s.N; n++)
            for (int k = 0; k < s.K; k++)
            for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++)
            {
                double g = dy[((n * s.K + k) * oh + i) * ow + j];
                for (int c = 0; c < s.C; c++)
                for (int r = 0; r < s.R; r++)
                for (int t = 0; t < s.S; t++)
                {
                    int h = i * s.Stride - s.Pad + r, v = j * s.Stride - s.Pad + t;
                    if (h >= 0 && h < s.H && v >= 0 && v < s.W)
                    {
                        dw[((k * s.C + c) * s.R + r) * s.S + t] += g * x[((n * s.C + c) * s.H + h) * s.W + v];
                    }
                }
            }
            return dw;
        }
    }
}
