namespace Engine.Runner.Training;

/// <summary>Deterministic random streams keyed by (seed, epoch, step, rank), so a resumed run draws exactly what an uninterrupted one would.</summary>
public static class Rng
{
    public static Random For(int seed, int epoch, int step, int rank = 0)
    {
        ulong z = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ (ulong)(uint)epoch * 0xBF58476D1CE4E5B9UL
                  ^ (ulong)(uint)step * 0x94D049BB133111EBUL ^ (ulong)(uint)rank * 0xD6E8FEB86659FD93UL;
        // SplitMix64 finaliser: nearby keys give unrelated seeds.
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return new Random(unchecked((int)z ^ (int)(z >> 32)));
    }
}
