using System.Numerics;
using System.Runtime.CompilerServices;

namespace Engine.Kernels;

/// <summary>
/// Division of a non-negative int by a divisor fixed for a whole launch, as one 64-bit multiply and a
/// shift. The convolution loaders split flat indices into (channel, row, column) for every element they
/// stage; a hardware-less 32-bit division costs about twenty instructions on a GPU, this costs a few.
/// Exact for 0 &lt;= n &lt; 2³¹: with l = ⌈log2 d⌉ and m = ⌈2^(31+l) / d⌉, m·d = 2^(31+l) + e with
/// 0 &lt;= e &lt; d, so n·m / 2^(31+l) exceeds n / d by less than 1/d, never reaching the next integer.
/// Public only because it is a field of <see cref="Conv2d.Args"/>.
/// </summary>
public readonly struct Conv2dDivisor
{
    public readonly int Value;
    public readonly ulong Magic;
    public readonly int Shift;

    public Conv2dDivisor(int divisor)
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
    public int Divide(int n) => (int)(((ulong)n * Magic) >> Shift);
}
