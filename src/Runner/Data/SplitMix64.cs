namespace Engine.Runner.Data;

/// <summary>
/// SplitMix64 (Steele, Lea and Flood): a tiny, fast generator whose output depends only on its seed,
/// so shuffles and synthetic images are the same on every machine and .NET version
/// (System.Random's seeded sequence is not a documented contract).
/// </summary>
internal struct SplitMix64
{
    private ulong _state;

    public SplitMix64(ulong seed) => _state = seed;

    /// <summary>A generator for one item of a stream, e.g. (seed, epoch) or (seed, split, image index).</summary>
    public static SplitMix64 For(long a, long b, long c = 0)
    {
        var mix = new SplitMix64((ulong)a);
        ulong s = mix.Next() ^ (ulong)b;
        mix = new SplitMix64(s);
        s = mix.Next() ^ (ulong)c;
        return new SplitMix64(new SplitMix64(s).Next());
    }

    public ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform integer in [0, bound), without modulo bias (Lemire's multiply-and-reject).</summary>
    public int NextInt(int bound)
    {
        uint s = (uint)bound;
        ulong m = (Next() >> 32) * s;
        if ((uint)m < s)
        {
            uint threshold = (0u - s) % s;
            while ((uint)m < threshold)
            {
                m = (Next() >> 32) * s;
            }
        }
        return (int)(m >> 32);
    }

    /// <summary>Uniform float in [0, 1).</summary>
    public float NextFloat() => (Next() >> 40) * (1f / (1 << 24));
}
