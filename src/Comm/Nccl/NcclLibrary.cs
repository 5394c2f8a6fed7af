using System.Collections;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Engine.Comm.Nccl;

/// <summary>
/// Finds libnccl.so.2: ENGINE_NCCL_PATH (a file or a folder), then each folder of LD_LIBRARY_PATH,
/// then the loader's own search (ldconfig), then the usual library folders, then the wheels
/// PyTorch installs (site-packages/nvidia/nccl/lib). A miss lists every place tried.
/// </summary>
public static class NcclLibrary
{
    public const string FileName = "libnccl.so.2";

    private static readonly object Gate = new();
    private static nint _handle;
    private static string? _loadedFrom;
    private static bool _resolverSet;

    /// <summary>The file the library was loaded from, once loaded.</summary>
    public static string? LoadedFrom => _loadedFrom;

    /// <summary>Loads NCCL (once) and routes the "nccl" imports to it.</summary>
    /// <exception cref="DllNotFoundException">No candidate loaded; the message lists each one and why.</exception>
    public static void Load()
    {
        if (!TryLoad(out string? error))
        {
            throw new DllNotFoundException(error);
        }
    }

    /// <summary>Like <see cref="Load"/>, returning false and the reason instead of throwing.</summary>
    public static bool TryLoad(out string? error)
    {
        lock (Gate)
        {
            error = null;
            if (_handle != 0)
            {
                return true;
            }
            var tried = new List<string>();
            foreach (string candidate in Candidates(Environment.GetEnvironmentVariables()))
            {
                bool isPath = candidate.Contains('/');
                if (isPath && !File.Exists(candidate))
                {
                    tried.Add($"{candidate} (no such file)");
                    continue;
                }
                try
                {
                    _handle = NativeLibrary.Load(candidate);
                    _loadedFrom = candidate;
                    SetResolver();
                    return true;
                }
                catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
                {
                    tried.Add($"{candidate} ({LoaderReason(e.Message)})");
                }
            }
            error = NotFoundMessage(tried);
            return false;
        }
    }

    internal static string NotFoundMessage(IReadOnlyList<string> tried)
        => $"NCCL ({FileName}) was not found. Looked in:\n  " + string.Join("\n  ", tried) +
           "\nInstall NCCL (e.g. apt install libnccl2, or pip install nvidia-nccl-cu12), or point ENGINE_NCCL_PATH at the library file " +
           "or its folder; or use --backend host.";

    /// <summary>
    /// Why the loader refused a candidate: .NET's message opens with a generic "Unable to load shared library"
    /// sentence and puts the loader's own reason (dlerror: no such file, wrong ELF class, a missing dependency)
    /// on the lines after it; keep those, on one line.
    /// </summary>
    internal static string LoaderReason(string message)
    {
        var lines = message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return lines.Length > 1 ? string.Join("; ", lines.Skip(1)) : lines.FirstOrDefault() ?? message;
    }

    /// <summary>Every place to try, in order, for the variables in <paramref name="env"/>.</summary>
    public static IReadOnlyList<string> Candidates(IDictionary env)
    {
        string? Var(string name) => env.Contains(name) ? env[name] as string : null;
        var list = new List<string>();
        if (Var("ENGINE_NCCL_PATH") is { Length: > 0 } explicitPath)
        {
            list.Add(Directory.Exists(explicitPath) ? Path.Combine(explicitPath, FileName) : explicitPath);
        }
        foreach (string dir in (Var("LD_LIBRARY_PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            list.Add(Path.Combine(dir, FileName));
        }
        list.Add(FileName); // the dynamic loader's own search: ld.so.cache, RUNPATH
        foreach (string dir in new[]
                 {
                     "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib",
                     "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/local/nccl/lib", "/opt/nccl/lib",
                 })
        {
            list.Add(Path.Combine(dir, FileName));
        }
        foreach (string sitePackages in PythonSitePackages(Var("VIRTUAL_ENV"), Var("CONDA_PREFIX"), Var("HOME")))
        {
            list.Add(Path.Combine(sitePackages, "nvidia", "nccl", "lib", FileName));
        }
        return list.Distinct().ToList();
    }

    private static IEnumerable<string> PythonSitePackages(string? venv, string? conda, string? home)
    {
        var roots = new List<string>();
        foreach (string? prefix in new[] { venv, conda })
        {
            if (!string.IsNullOrEmpty(prefix))
            {
                roots.Add(Path.Combine(prefix, "lib"));
            }
        }
        if (!string.IsNullOrEmpty(home))
        {
            roots.Add(Path.Combine(home, ".local", "lib"));
        }
        roots.AddRange(["/usr/local/lib", "/usr/lib", "/opt/conda/lib"]);
        foreach (string root in roots)
        {
            string[] pythons;
            try
            {
                pythons = Directory.Exists(root) ? Directory.GetDirectories(root, "python3*") : [];
            }
            catch (Exception e) when (e is UnauthorizedAccessException or IOException)
            {
                continue;
            }
            foreach (string py in pythons.Order(StringComparer.Ordinal))
            {
                yield return Path.Combine(py, "site-packages");
                yield return Path.Combine(py, "dist-packages");
            }
        }
    }

    private static void SetResolver()
    {
        if (_resolverSet)
        {
            return;
        }
        _resolverSet = true;
        NativeLibrary.SetDllImportResolver(typeof(NcclLibrary).Assembly, Resolve);
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path)
        => name == NcclNative.Library ? _handle : 0;

    /// <summary>NCCL's version code (e.g. 22105 for 2.21.5), loading the library if needed.</summary>
    public static int Version()
    {
        Load();
        NcclNative.Check(NcclNative.ncclGetVersion(out int v), "ncclGetVersion");
        return v;
    }
}
