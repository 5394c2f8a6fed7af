using System.Runtime.InteropServices;
using Engine.Comm.Nccl;
using Engine.Tests;

namespace Engine.Comm.Tests;

/// <summary>
/// The fake libnccl.so.2 of native/ (native/fake_nccl.c), which runs NCCL's collectives between rank processes over
/// whatever libcuda.so.1 is loaded: with the simulated GPU of ../shared/gpusim it lets NcclCommunicator run on ILGPU
/// buffers as on a GPU host. .ci/run builds it (cmake -S native -B native/build); ENGINE_FAKE_NCCL names another
/// build. Ranks get it through ENGINE_NCCL_PATH, the engine's only way to a non-default NCCL.
/// </summary>
public static class FakeNccl
{
    public const string PathVariable = "ENGINE_FAKE_NCCL";

    private const string BuiltAt = "native/build/fake-nccl/" + NcclLibrary.FileName;

    /// <summary>The library file: ENGINE_FAKE_NCCL, else native/build/fake-nccl/libnccl.so.2 of the repository holding the tests.</summary>
    public static string LibraryPath
    {
        get
        {
            if (Environment.GetEnvironmentVariable(PathVariable) is { Length: > 0 } explicitPath)
            {
                return explicitPath;
            }
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Engine.sln")))
                {
                    return Path.Combine(dir.FullName, BuiltAt);
                }
            }
            return BuiltAt;
        }
    }

    /// <summary>
    /// Why the fake-NCCL tests cannot run here, or null: they need the simulated GPU (skipped, like every
    /// simulated-GPU test, where its env.sh was not sourced) and the built library (skipped outside CI; in CI they run
    /// and fail, so a missing build step cannot pass as a skip).
    /// </summary>
    public static string? SkipReason => SimulatedGpu.NotSetUpReason ?? OutsideCi.SkipReason(File.Exists(LibraryPath)
        ? null
        : $"the fake NCCL is not built at {LibraryPath} (cmake -S native -B native/build && cmake --build native/build)");

    /// <summary>The variables that make a rank use the fake NCCL (and NCCL_DEBUG=WARN, so its refusals are explained).</summary>
    public static Dictionary<string, string> Variables(params (string Name, string Value)[] more)
    {
        string library = LibraryPath;
        if (!File.Exists(library))
        {
            throw new FileNotFoundException($"the fake NCCL is not built at {library}: run cmake -S native -B native/build && cmake --build native/build (.ci/run does)", library);
        }
        var env = new Dictionary<string, string> { ["ENGINE_NCCL_PATH"] = library, ["NCCL_DEBUG"] = "WARN" };
        foreach ((string name, string value) in more)
        {
            env[name] = value;
        }
        return env;
    }

    public readonly record struct Counters(int InitsInFlight, int Aborts, int Live);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void StatsFunction(out int initsInFlight, out int aborts, out int live);

    /// <summary>The fake's counters (fakeNcclStats, not part of NCCL), or null when the NCCL this process loaded is not the fake.</summary>
    public static Counters? Stats()
    {
        if (NcclLibrary.LoadedFrom is not { } file || !NativeLibrary.TryLoad(file, out nint handle)
            || !NativeLibrary.TryGetExport(handle, "fakeNcclStats", out nint export))
        {
            return null;
        }
        Marshal.GetDelegateForFunctionPointer<StatsFunction>(export)(out int inits, out int aborts, out int live);
        return new Counters(inits, aborts, live);
    }
}

/// <summary>A fact that runs NCCL through the fake library on the simulated GPU; skipped as <see cref="FakeNccl.SkipReason"/> says.</summary>
public sealed class FakeNcclFactAttribute : FactAttribute
{
    public FakeNcclFactAttribute()
    {
        if (FakeNccl.SkipReason is { } why) Skip = why;
    }
}

/// <inheritdoc cref="FakeNcclFactAttribute"/>
public sealed class FakeNcclTheoryAttribute : TheoryAttribute
{
    public FakeNcclTheoryAttribute()
    {
        if (FakeNccl.SkipReason is { } why) Skip = why;
    }
}
