namespace Engine.Comm;

/// <summary>Emulated nodes could not be made or removed here: no root, no iproute2, or an ip/tc command failed (the message says which).</summary>
public sealed class EmulationException(string message) : Exception(message);
