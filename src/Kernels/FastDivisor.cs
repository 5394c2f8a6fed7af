using System.Numerics;
using System.Runtime.CompilerServices;

namespace Engine.Kernels;

/// <summary>
/// Division of a non-negative int by a divisor fixed for a whole launch, as one 64-bit multiply and a
/// shift. The convolution loaders split flat indices into (channel, row, column) for every element they
/// stage, and batch norm finds each element's channel; a hardware-less 32-bit division costs about twenty
/// instructions on a GPU, this costs a few.
/// Exact for 0 &lt;= n &lt; 2³¹: with l = ⌈log2 d⌉ and m = ⌈2^(31+l) / d⌉, m·d = 2^(31+l) + e with
/// 0 &lt;= e &lt; d, so n·m / 2^(31+l) exceeds n / d by less than 1/d, never reaching the next integer.
/// Public only because it is a field of kernel parameters (<see cref="Conv2d.Args"/>, <see cref="ChannelIndex"/>).
/// </summary>
public readonly struct FastDivisor
{
    public readonly int Value;

    /// <summary>
    /// m, below 2³²: d &gt; 2^(l−1) (or d = 1, m = 2³¹) puts 2^(31+l) / d below 2³² by at least 2³² / d ≥ 2, so its
    /// ceiling is too. <see cref="Divide"/> multiplies its low 32 bits, so n·m is one 32x32→64-bit multiply on a
    /// GPU. The field stays 64-bit: with a 32-bit one ILGPU 1.5.3 failed to compile some of the kernels that take
    /// the struct as a parameter (an internal "cannot convert Int32 to Struct" error, or local memory).
    /// </summary>
    public readonly ulong Magic;

    public readonly int Shift;

    public FastDivisor(int divisor)
    {
        if (divisor <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(divisor), divisor, "The divisor must be positive.");
        }
        int log = divisor == 1 ? 0 : BitOperations.Log2((uint)divisor - 1) + 1;
        Value = divisor;
        Shift = 31 + log;
        Magic = ((1UL << Shift) + (ulong)divisor - 1) / (ulong)divisor;
    }

    /// <summary>n / Value for 0 &lt;= n &lt;= int.MaxValue.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Divide(int n) => (int)(((ulong)(uint)n * (uint)Magic) >> Shift);

    /// <summary>n mod Value for 0 &lt;= n &lt;= int.MaxValue.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Remainder(int n) => n - Divide(n) * Value;
}

/// <summary>
/// The channel of element i of an NCHW tensor, (i / hw) mod channels, with two multiply-shift divisions
/// instead of a hardware-less integer division and remainder per element (about forty instructions).
/// </summary>
public readonly struct ChannelIndex
{
    public readonly FastDivisor Hw;
    public readonly FastDivisor Channels;

    /// <param name="channels">C.</param>
    /// <param name="hw">Elements per channel and image: H·W (or H·W/4 for float4 views).</param>
    public ChannelIndex(int channels, int hw)
    {
        Hw = new FastDivisor(hw);
        Channels = new FastDivisor(channels);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Of(int i) => Channels.Remainder(Hw.Divide(i));
}
