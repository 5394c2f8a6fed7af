namespace Engine.Nn;

/// <summary>Writes a text file so that a reader never sees half of it: a temporary file beside it, then a rename.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text)
    {
        string full = Path.GetFullPath(path);
        string tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            File.WriteAllText(tmp, text);
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            File.Delete(tmp); // a failed write leaves nothing behind
            throw;
        }
    }
}
