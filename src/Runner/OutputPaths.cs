namespace Engine.Runner;

/// <summary>
/// Checks, before any work starts, that a run can write what it was asked to write: the error comes
/// at once and names the flag, instead of after an hour of training. Nothing is left behind.
/// </summary>
public static class OutputPaths
{
    /// <summary>A file the run will create or replace: its folder exists and takes new files, and the path itself is not a folder.</summary>
    /// <exception cref="ArgumentException">Names <paramref name="flag"/>, the path and what is wrong with it.</exception>
    public static void CheckFile(string flag, string path)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            throw new ArgumentException($"{flag} {path}: is a folder; it needs a file name (e.g. {Path.Combine(path, "run.json")}).");
        }
        CheckFolderTakesFiles(flag, path, Path.GetDirectoryName(full)!);
    }

    /// <summary>A folder the run will fill: an existing folder that takes new files, or a new one whose parent does.</summary>
    public static void CheckFolder(string flag, string path)
    {
        string full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            throw new ArgumentException($"{flag} {path}: is a file; it needs a folder (existing or new).");
        }
        CheckFolderTakesFiles(flag, path, Directory.Exists(full) ? full : Path.GetDirectoryName(full)!);
    }

    private static void CheckFolderTakesFiles(string flag, string path, string folder)
    {
        if (File.Exists(folder))
        {
            throw new ArgumentException($"{flag} {path}: {folder} is a file, not a folder.");
        }
        if (!Directory.Exists(folder))
        {
            throw new ArgumentException($"{flag} {path}: folder {folder} does not exist.");
        }
        // Permissions, read-only mounts and ACLs are only known by trying: create and delete a probe file.
        string probe = Path.Combine(folder, $".engine-write-probe-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose))
            {
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"{flag} {path}: cannot write into folder {folder} ({e.Message}).");
        }
        finally
        {
            if (File.Exists(probe)) File.Delete(probe);
        }
    }
}
