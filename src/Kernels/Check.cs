using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>Argument checks shared by the launchers: a wrong length is a bug, and its message says which op and which operand.</summary>
internal static class Check
{
    public static void SameLength<T>(string op, ArrayView<T> first, params ArrayView<T>[] rest) where T : unmanaged
    {
        for (int i = 0; i < rest.Length; i++)
        {
            if (rest[i].Length != first.Length)
            {
                throw new ArgumentException($"{op}: operand {i + 1} has {rest[i].Length} elements, operand 0 has {first.Length}.");
            }
        }
    }

    /// <summary>Throws unless <paramref name="view"/> holds at least <paramref name="needed"/> elements.</summary>
    public static void AtLeast<T>(string op, string name, ArrayView<T> view, long needed) where T : unmanaged
    {
        if (view.Length < needed)
        {
            throw new ArgumentException($"{op}: '{name}' has {view.Length} elements but the shape needs {needed}.");
        }
    }

    /// <summary>Throws unless every view starts on a 16-byte boundary (the float4 kernels' requirement).</summary>
    public static void Aligned(string op, params ArrayView<float>[] views)
    {
        for (int i = 0; i < views.Length; i++)
        {
            if (!Float4Dispatch.IsAligned(views[i]))
            {
                throw new ArgumentException($"{op}: operand {i} starts at address 0x{Float4Dispatch.Address(views[i]):x}, not on a 16-byte boundary; use the scalar kernel.");
            }
        }
    }
}
