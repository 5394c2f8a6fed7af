namespace Engine.Nn;

/// <summary>torch.nn.init's distributions, drawn from a seeded System.Random (values differ from torch's RNG; the distributions match).</summary>
public static class Init
{
    public static void Normal(Span<float> values, Random rng, double std)
    {
        for (int i = 0; i < values.Length; i++)
        {
            // Box-Muller: two uniforms in (0,1] give one standard normal.
            double u1 = 1.0 - rng.NextDouble(), u2 = rng.NextDouble();
            values[i] = (float)(std * Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2));
        }
    }

    public static void Uniform(Span<float> values, Random rng, double bound)
    {
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
        }
    }
}
