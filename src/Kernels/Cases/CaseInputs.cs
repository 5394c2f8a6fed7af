namespace Engine.Kernels.Cases;

/// <summary>Random operands of the op cases.</summary>
public static class CaseInputs
{
    public static float[] Uniform(Random rng, long n, float lo = -1, float hi = 1)
    {
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = lo + (hi - lo) * (float)rng.NextDouble();
        return a;
    }

    public static int[] Labels(Random rng, int n, int classes) => Enumerable.Range(0, n).Select(_ => rng.Next(classes)).ToArray();

    public static double[] D(float[] a) => Array.ConvertAll(a, v => (double)v);
}
