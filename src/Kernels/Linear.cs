using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>
/// Fully connected layer with PyTorch's nn.Linear layout: x [n, inF], w [outF, inF], b [outF],
/// y [n, outF], y = x w^T + b. Forward, backward-data (dx = dy w) and backward-weight (dw = dy^T x)
/// are one shared-memory tiled GEMM read through different strides; the bias gradient is a
/// per-feature column sum done as a fixed-order reduction (deterministic, no float atomics).
/// </summary>
public static class Linear
{
    /// <summary>Largest tile edge the shared-memory arrays are sized for (the CUDA tuning).</summary>
    private const int MaxTile = 16;

    /// <summary>Row stride of a shared tile: one spare column keeps transposed stores free of bank conflicts.</summary>
    private const int TileStride = MaxTile + 1;

    private const int SharedTile = MaxTile * TileStride;

    // ---- kernels ----

    /// <summary>
    /// The (row, col) element of C = A B for the calling thread, where A(r, k) = a[r * aRow + k * aCol]
    /// and B(k, c) = b[k * bRow + c * bCol]; rows x cols outputs, depth terms. Every thread of the
    /// group takes part in the loads and barriers, also those whose output lies outside C.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TiledProduct(
        ArrayView<float> a, int aRow, int aCol, ArrayView<float> b, int bRow, int bCol,
        int rows, int cols, int depth, int tile, ArrayView<float> aTile, ArrayView<float> bTile)
    {
        int tx = Group.IdxX, ty = Group.IdxY;
        int row0 = Grid.IdxY * tile, col0 = Grid.IdxX * tile;

        // Let the thread index that advances fastest (X) walk the operand's contiguous dimension,
        // so that global loads coalesce whichever way the operand is stored.
        int ar = aCol == 1 ? ty : tx, ak = aCol == 1 ? tx : ty;
        int bk = bCol == 1 ? ty : tx, bc = bCol == 1 ? tx : ty;

        float sum = 0f;
        for (int k0 = 0; k0 < depth; k0 += tile)
        {
            int gr = row0 + ar, gka = k0 + ak;
            aTile[ar * TileStride + ak] = gr < rows && gka < depth ? a[gr * aRow + gka * aCol] : 0f;
            int gkb = k0 + bk, gc = col0 + bc;
            bTile[bk * TileStride + bc] = gkb < depth && gc < cols ? b[gkb * bRow + gc * bCol] : 0f;
            Group.Barrier();
            for (int k = 0; k < tile; k++)
            {
                sum += aTile[ty * TileStride + k] * bTile[k * TileStride + tx];
            }
            Group.Barrier();
        }
        return sum;
    }

    /// <summary>y[r, o] = sum_k x[r, k] w[o, k] + b[o].</summary>
    [KernelName("linear_fwd")]
    [GroupSize(nameof(TiledGroupThreads))]
    internal static void ForwardKernel(
        ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ArrayView<float> y, int n, int inF, int outF, int tile)
    {
        var aTile = SharedMemory.Allocate<float>(SharedTile);
        var bTile = SharedMemory.Allocate<float>(SharedTile);
        float s = TiledProduct(x, inF, 1, w, 1, inF, n, outF, inF, tile, aTile, bTile);
        int r = Grid.IdxY * tile + Group.IdxY, o = Grid.IdxX * tile + Group.IdxX;
        if (r < n && o < outF)
        {
            y[r * outF + o] = s + b[o];
        }
    }

    /// <summary>dx[r, k] = sum_o dy[r, o] w[o, k].</summary>
    [KernelName("linear_bwd_data")]
    [GroupSize(nameof(TiledGroupThreads))]
    internal static void BackwardDataKernel(
        ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx, int n, int inF, int outF, int tile)
    {
        var aTile = SharedMemory.Allocate<float>(SharedTile);
        var bTile = SharedMemory.Allocate<float>(SharedTile);
        float s = TiledProduct(dy, outF, 1, w, inF, 1, n, inF, outF, tile, aTile, bTile);
        int r = Grid.IdxY * tile + Group.IdxY, k = Grid.IdxX * tile + Group.IdxX;
        if (r < n && k < inF)
        {
            dx[r * inF + k] = s;
        }
    }

    /// <summary>dw[o, k] = sum_r dy[r, o] x[r, k].</summary>
    [KernelName("linear_bwd_weight")]
    [GroupSize(nameof(TiledGroupThreads))]
    internal static void BackwardWeightKernel(
        ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dw, int n, int inF, int outF, int tile)
    {
        var aTile = SharedMemory.Allocate<float>(SharedTile);
        var bTile = SharedMemory.Allocate<float>(SharedTile);
        float s = TiledProduct(dy, 1, outF, x, inF, 1, outF, inF, n, tile, aTile, bTile);
        int o = Grid.IdxY * tile + Group.IdxY, k = Grid.IdxX * tile + Group.IdxX;
        if (o < outF && k < inF)
        {
            dw[o * inF + k] = s;
        }
    }

    /// <summary>
    /// Bias gradient, first pass: group (X, Y) covers columns X*tile .. X*tile+tile-1 and the rows of chunk Y.
    /// Thread (tx, ty) sums column X*tile+tx over rows chunk*rowsPerChunk + ty, + tile, ... (consecutive threads
    /// read consecutive columns of a row, so loads coalesce); a tree over ty in shared memory leaves
    /// partial[Y, o] = the chunk's sum. Chunks spread a short, wide reduction over the whole device.
    /// </summary>
    [KernelName("linear_bwd_bias")]
    [GroupSize(nameof(TiledGroupThreads))]
    internal static void BackwardBiasKernel(ArrayView<float> dy, ArrayView<float> partial, int n, int outF, int rowsPerChunk, int tile)
    {
        var sums = SharedMemory.Allocate<float>(SharedTile);
        int tx = Group.IdxX, ty = Group.IdxY;
        int o = Grid.IdxX * tile + tx, chunk = Grid.IdxY;
        int rowEnd = (chunk + 1) * rowsPerChunk < n ? (chunk + 1) * rowsPerChunk : n;
        float s = 0f;
        if (o < outF)
        {
            for (int r = chunk * rowsPerChunk + ty; r < rowEnd; r += tile)
            {
                s += dy[r * outF + o];
            }
        }
        sums[ty * TileStride + tx] = s;
        Group.Barrier();
        for (int stride = 1; stride < tile; stride *= 2)
        {
            if (ty % (2 * stride) == 0 && ty + stride < tile)
            {
                sums[ty * TileStride + tx] += sums[(ty + stride) * TileStride + tx];
            }
            Group.Barrier();
        }
        if (ty == 0 && o < outF)
        {
            partial[chunk * outF + o] = sums[tx];
        }
    }

    /// <summary>Bias gradient, second pass: db[o] = sum over chunks of partial[chunk, o], in chunk order (reproducible).</summary>
    [KernelName("linear_bwd_bias_reduce")]
    internal static void BackwardBiasReduceKernel(Index1D o, ArrayView<float> partial, ArrayView<float> db, int outF, int chunks)
    {
        float s = 0f;
        for (int c = 0; c < chunks; c++)
        {
            s += partial[c * outF + o];
        }
        db[o] = s;
    }

    // ---- launchers ----

    /// <summary>y = x w^T + b for x [n, inF], w [outF, inF], b [outF], y [n, outF] (views may be longer than the shape).</summary>
    public static void Forward(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> b, ArrayView<float> y, int n, int inF, int outF)
    {
        using var profile = dev.Profile("linear_fwd", OpCost.LinearForward(n, inF, outF));
        int tile = ValidateShape(dev, nameof(Forward), n, inF, outF);
        Check.AtLeast("Linear.Forward", "x", x, (long)n * inF);
        Check.AtLeast("Linear.Forward", "w", w, (long)outF * inF);
        Check.AtLeast("Linear.Forward", "b", b, outF);
        Check.AtLeast("Linear.Forward", "y", y, (long)n * outF);
        dev.Kernel("linear_fwd", acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(ForwardKernel))
            (dev.Stream, TiledConfig(outF, n, tile), x, w, b, y, n, inF, outF, tile);
    }

    /// <summary>
    /// Overwrites dx [n, inF] = dy w, dw [outF, inF] = dy^T x and db [outF] = column sums of dy,
    /// given the forward's x [n, inF], w [outF, inF] and the output gradient dy [n, outF].
    /// </summary>
    public static void Backward(Device dev, ArrayView<float> x, ArrayView<float> w, ArrayView<float> dy,
        ArrayView<float> dx, ArrayView<float> dw, ArrayView<float> db, int n, int inF, int outF)
    {
        using var profile = dev.Profile("linear_bwd", OpCost.LinearBackward(n, inF, outF));
        int tile = ValidateShape(dev, nameof(Backward), n, inF, outF);
        Check.AtLeast("Linear.Backward", "x", x, (long)n * inF);
        Check.AtLeast("Linear.Backward", "w", w, (long)outF * inF);
        Check.AtLeast("Linear.Backward", "dy", dy, (long)n * outF);
        Check.AtLeast("Linear.Backward", "dx", dx, (long)n * inF);
        Check.AtLeast("Linear.Backward", "dw", dw, (long)outF * inF);
        Check.AtLeast("Linear.Backward", "db", db, outF);

        dev.Kernel("linear_bwd_data", acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(BackwardDataKernel))
            (dev.Stream, TiledConfig(inF, n, tile), dy, w, dx, n, inF, outF, tile);
        dev.Kernel("linear_bwd_weight", acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(BackwardWeightKernel))
            (dev.Stream, TiledConfig(inF, outF, tile), dy, x, dw, n, inF, outF, tile);
        var (chunks, rowsPerChunk) = BiasChunks(dev, n, outF, tile);
        var partial = Workspace.For(dev).Get(dev, (long)chunks * outF);
        dev.Kernel("linear_bwd_bias", acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, int, int, int, int>(BackwardBiasKernel))
            (dev.Stream, TiledConfig(outF, chunks * tile, tile), dy, partial, n, outF, rowsPerChunk, tile);
        dev.Kernel("linear_bwd_bias_reduce", acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<float>, ArrayView<float>, int, int>(BackwardBiasReduceKernel))
            (dev.Stream, outF, partial, db, outF, chunks);
    }

    /// <summary>Threads in a group of the tiled GEMM kernels: tile x tile (<see cref="TiledConfig"/>).</summary>
    internal static int TiledGroupThreads(KernelTuning t) => t.GroupSize;

    /// <summary>
    /// How the bias reduction's rows are cut: enough chunks that column blocks x chunks fill the device about
    /// four groups per SM (a ResNet head has 10 columns: one column block), each chunk at least tile rows so
    /// every thread of a group has a row to add.
    /// </summary>
    private static (int Chunks, int RowsPerChunk) BiasChunks(Device dev, int n, int outF, int tile)
    {
        int columnBlocks = (outF + tile - 1) / tile;
        int wanted = Math.Max(1, 4 * dev.Accelerator.NumMultiprocessors / columnBlocks);
        int chunks = Math.Clamp(wanted, 1, Math.Max(1, n / tile));
        int rowsPerChunk = (n + chunks - 1) / chunks;
        return ((n + rowsPerChunk - 1) / rowsPerChunk, rowsPerChunk); // no empty chunk
    }

    /// <summary>Groups of tile x tile threads covering a rows x cols output (X walks columns).</summary>
    private static KernelConfig TiledConfig(int cols, int rows, int tile)
        => new(new Index2D((cols + tile - 1) / tile, (rows + tile - 1) / tile), new Index2D(tile, tile));

    private static int ValidateShape(Device dev, string method, int n, int inF, int outF)
    {
        ArgumentNullException.ThrowIfNull(dev);
        if (n <= 0 || inF <= 0 || outF <= 0)
        {
            throw new ArgumentException($"Linear.{method}: n, inF and outF must be positive (got n={n}, inF={inF}, outF={outF}).");
        }
        long largest = Math.Max((long)n * inF, Math.Max((long)n * outF, (long)outF * inF));
        if (largest > int.MaxValue)
        {
            throw new ArgumentException($"Linear.{method}: {largest} elements in one operand exceed the kernel's 32-bit indexing.");
        }
        int tile = dev.Tuning.Tile;
        if (tile < 1 || tile > MaxTile)
        {
            throw new InvalidOperationException($"Linear.{method}: tile {tile} is outside 1..{MaxTile}, the shared-memory tile size.");
        }
        return tile;
    }

    // ---- float64 references ----

    public static class Reference
    {
        /// <summary>y [n, outF] = x [n, inF] w^T [inF, outF] + b.</summary>
        public static double[] Forward(double[] x, double[] w, double[] b, int n, int inF, int outF)
        {
            var y = new double[n * outF];
            for (int r = 0; r < n; r++)
            {
                for (int o = 0; o < outF; o++)
                {
                    double s = b[o];
                    for (int k = 0; k < inF; k++) s += x[r * inF + k] * w[o * inF + k];
                    y[r * outF + o] = s;
                }
            }
            return y;
        }

        /// <summary>Gradients of sum(dy * Forward(x, w, b)) with respect to x, w and b.</summary>
        public static (double[] Dx, double[] Dw, double[] Db) Backward(double[] x, double[] w, double[] dy, int n, int inF, int outF)
        {
            var dx = new double[n * inF];
            var dw = new double[outF * inF];
            var db = new double[outF];
            for (int r = 0; r < n; r++)
            {
                for (int o = 0; o < outF; o++)
                {
                    double g = dy[r * outF + o];
                    db[o] += g;
                    for (int k = 0; k < inF; k++)
                    {
                        dx[r * inF + k] += g * w[o * inF + k];
                        dw[o * inF + k] += g * x[r * inF + k];
                    }
                }
            }
            return (dx, dw, db);
        }
    }
}
