using System.Reflection;

namespace Engine.Comm;

/// <summary>A program to start as each rank: its file and the arguments that come before the rank's own.</summary>
public sealed record ProcessTarget(string FileName, IReadOnlyList<string> PrefixArgs)
{
    /// <summary>
    /// This very program: the single-file apphost (<c>engine</c>) re-runs itself; under the shared host
    /// (<c>dotnet engine.dll</c>) it is <c>dotnet</c> with the entry assembly's path first.
    /// </summary>
    public static ProcessTarget CurrentProcess()
    {
        string path = Environment.ProcessPath
            ?? throw new InvalidOperationException("cannot tell which executable this process runs (Environment.ProcessPath is null).");
        string name = Path.GetFileNameWithoutExtension(path);
        // Empty in a single-file app, which is then the apphost case below: that is what we want.
#pragma warning disable IL3000
        string? entry = Assembly.GetEntryAssembly()?.Location;
#pragma warning restore IL3000
        if (string.Equals(name, "dotnet", StringComparison.OrdinalIgnoreCase) && !string.IsNullOrEmpty(entry))
        {
            return new ProcessTarget(path, [entry]);
        }
        return new ProcessTarget(path, []);
    }
}
