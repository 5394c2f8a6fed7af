using System.Runtime.InteropServices;

namespace Engine.Kernels;

/// <summary>
/// NVTX ranges for Nsight (Systems and Compute). Uses the engine's shim (native/, NVTX3, domain
/// "engine") if present, else libnvToolsExt.so.1, else does nothing. Process-wide, like NVTX itself.
/// </summary>
public static class Nvtx
{
    private static readonly Backend Loaded = Load();

    /// <summary>Which NVTX library is in use: the shim's path, libnvToolsExt.so.1, or "none".</summary>
    public static string Source => Loaded.Source;

    public static bool Enabled => Loaded.Push is not null;

    /// <summary>Opens a range that the returned scope closes: <c>using (Nvtx.Range("forward")) ...</c>.</summary>
    public static Scope Range(string name)
    {
        if (Loaded.Push is null) return default;
        Push(name);
        return new Scope(true);
    }

    public static unsafe void Push(string name)
    {
        if (Loaded.Push is not { } push) return;
        int n = System.Text.Encoding.ASCII.GetByteCount(name);
        byte* buffer = stackalloc byte[n + 1];
        System.Text.Encoding.ASCII.GetBytes(name, new Span<byte>(buffer, n));
        buffer[n] = 0;
        push((IntPtr)buffer);
    }

    public static void Pop() => Loaded.Pop?.Invoke();

    public readonly struct Scope(bool open) : IDisposable
    {
        public void Dispose()
        {
            if (open) Pop();
        }
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void PushFn(IntPtr name);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int PopFn();

    private sealed record Backend(string Source, Action<IntPtr>? Push, Action? Pop);

    private static Backend Load()
    {
        var shims = new List<string>();
        if (Environment.GetEnvironmentVariable("ENGINE_NVTX_PATH") is { Length: > 0 } env) shims.Add(env);
        shims.Add(Path.Combine(Environment.CurrentDirectory, "native", "build", "libengine_nvtx.so"));
        shims.Add(Path.Combine(AppContext.BaseDirectory, "native", "build", "libengine_nvtx.so"));
        shims.Add(Path.Combine(AppContext.BaseDirectory, "libengine_nvtx.so"));
        foreach (string path in shims)
        {
            if (File.Exists(path) && NativeLibrary.TryLoad(path, out IntPtr lib)
                && NativeLibrary.TryGetExport(lib, "engine_nvtx_push", out IntPtr push) && NativeLibrary.TryGetExport(lib, "engine_nvtx_pop", out IntPtr pop))
            {
                var p = Marshal.GetDelegateForFunctionPointer<PushFn>(push);
                var q = Marshal.GetDelegateForFunctionPointer<Action>(pop);
                return new Backend(path, s => p(s), q);
            }
        }
        if (NativeLibrary.TryLoad("libnvToolsExt.so.1", out IntPtr v2)
            && NativeLibrary.TryGetExport(v2, "nvtxRangePushA", out IntPtr push2) && NativeLibrary.TryGetExport(v2, "nvtxRangePop", out IntPtr pop2))
        {
            var p = Marshal.GetDelegateForFunctionPointer<PushFn>(push2);
            var q = Marshal.GetDelegateForFunctionPointer<PopFn>(pop2);
            return new Backend("libnvToolsExt.so.1", s => p(s), () => q());
        }
        return new Backend("none", null, null);
    }
}
