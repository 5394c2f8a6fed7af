namespace Engine.Runner.Tests;

/// <summary>The phases of the seed's three modes, in the order hand-made breakdowns give their columns.</summary>
internal static class SeedPhases
{
    public static readonly string[] Names = { "data", "h2d", "scatter", "replicate", "forward", "gather", "loss", "backward", "grad_sync", "optimizer" };

    /// <summary>Per-step phases from milliseconds and bytes in <see cref="Names"/> order (bytes zero when null).</summary>
    public static Dictionary<string, PhaseStat> Of(double[] ms, long[]? bytes = null)
    {
        var phases = new Dictionary<string, PhaseStat>();
        for (int i = 0; i < Names.Length; i++) phases[Names[i]] = new PhaseStat(ms[i] / 1000, bytes?[i] ?? 0);
        return phases;
    }
}
