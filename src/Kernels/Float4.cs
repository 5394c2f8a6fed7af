using System.Runtime.InteropServices;
using ILGPU;

namespace Engine.Kernels;

/// <summary>
/// Four floats moved as one 16-byte value: ILGPU compiles a load or store of it to a single
/// ld/st.v4.f32, a quarter of the memory instructions of four scalar accesses (a test checks the PTX).
/// The memory-bound kernels' float4 versions use it for the body of a view and plain floats for the
/// last length % 4 elements; <see cref="Float4Dispatch"/> says when their launchers may take them.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 16)]
public struct Float4
{
    public float X, Y, Z, W;

    public Float4(float x, float y, float z, float w)
    {
        X = x;
        Y = y;
        Z = z;
        W = w;
    }
}

/// <summary>
/// When a launcher may take its float4 kernel: every view starts on a 16-byte boundary (the hardware
/// requires it for 16-byte accesses), float4 is not turned off (ENGINE_FLOAT4=0) or suspended on this
/// thread; and the float4 view of a float view.
/// </summary>
public static class Float4Dispatch
{
    /// <summary>
    /// Whether <paramref name="view"/>'s first element sits on a 16-byte boundary of its device's memory,
    /// and 16 bytes into its buffer (so that viewing it as float4s keeps its offset exact).
    /// </summary>
    public static bool IsAligned(ArrayView<float> view) => view.Length == 0 || (Address(view) % 16 == 0 && OffsetInBytes(view) % 16 == 0);

    private static long OffsetInBytes<TView>(TView view) where TView : IContiguousArrayView => view.IndexInBytes;

    /// <summary>The device address of the view's first element (its buffer's base plus its offset).</summary>
    public static long Address<TView>(TView view) where TView : IArrayView, IContiguousArrayView
        => view.Buffer.NativePtr + view.IndexInBytes;

    [ThreadStatic]
    private static int t_suspended;

    /// <summary>
    /// ENGINE_FLOAT4=0 (or false / off) turns the float4 kernels off for the whole process: a switch for
    /// a GPU run where one of them misbehaves, to tell it apart from the rest without a rebuild.
    /// </summary>
    public static bool Enabled { get; } = EnabledBy(Environment.GetEnvironmentVariable("ENGINE_FLOAT4"));

    /// <summary>How a value of ENGINE_FLOAT4 reads: unset or anything but 0 / false / off means on.</summary>
    public static bool EnabledBy(string? value)
        => value is null || !(value.Trim() is "0" || value.Trim().Equals("false", StringComparison.OrdinalIgnoreCase)
            || value.Trim().Equals("off", StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// Until the returned scope is disposed, the dispatching launchers on this thread take their scalar
    /// kernels: the bench's v1 of an op whose float4 pass sits inside one launcher (batch norm).
    /// </summary>
    public static Scope Suspend()
    {
        t_suspended++;
        return new Scope();
    }

    public readonly struct Scope : IDisposable
    {
        public void Dispose() => t_suspended--;
    }

    /// <summary>Whether the float4 path may run: not suspended, enough elements for one float4, and every view aligned.</summary>
    public static bool CanUse(long length, ArrayView<float> a)
        => Enabled && t_suspended == 0 && length >= 4 && IsAligned(a);

    /// <inheritdoc cref="CanUse(long, ArrayView{float})"/>
    public static bool CanUse(long length, ArrayView<float> a, ArrayView<float> b)
        => CanUse(length, a) && IsAligned(b);

    /// <inheritdoc cref="CanUse(long, ArrayView{float})"/>
    public static bool CanUse(long length, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c)
        => CanUse(length, a) && IsAligned(b) && IsAligned(c);

    /// <inheritdoc cref="CanUse(long, ArrayView{float})"/>
    public static bool CanUse(long length, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> d)
        => CanUse(length, a, b, c) && IsAligned(d);

    /// <summary>Grid-stride threads for a float4 kernel over <paramref name="count"/> floats: enough for the float4 body and for the tail of count % 4.</summary>
    public static int Threads(Device dev, int count) => dev.GridStrideThreads(Math.Max(count / 4, count % 4));

    /// <summary>The first length / 4 * 4 elements of <paramref name="view"/> as float4s.</summary>
    public static ArrayView<Float4> Body(ArrayView<float> view, long length)
        => view.SubView(0, length / 4 * 4).Cast<Float4>();
}
