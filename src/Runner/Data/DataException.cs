namespace Engine.Runner.Data;

/// <summary>A dataset that cannot be loaded: the message names the file (or folder) and what is wrong with it.</summary>
public sealed class DataException : Exception
{
    public DataException(string message) : base(message) { }
    public DataException(string message, Exception inner) : base(message, inner) { }
}
