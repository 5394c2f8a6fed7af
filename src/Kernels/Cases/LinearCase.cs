namespace Engine.Kernels.Cases;

/// <summary>The shapes and tolerance the linear cases share.</summary>
public static class LinearCase
{
    /// <summary>Sizes that straddle the CPU tile (4), most not a multiple of it, one of 1, and a tall one (many rows per output of db).</summary>
    public static IReadOnlyList<LinearShape> Shapes { get; } = [new(5, 7, 3), new(1, 1, 1), new(9, 13, 10), new(8, 4, 4), new(21, 6, 2)];

    /// <summary>The model's classifier at a full batch.</summary>
    public static IReadOnlyList<LinearShape> LargeShapes { get; } = [new(512, 512, 10)];

    /// <summary>Outputs are sums over n (dw, db) or inF (y, dx) products: an absolute floor that grows with the longer.</summary>
    public static double Atol(in LinearShape s) => Math.Max(1e-5, 1e-6 * Math.Max(s.N, s.InF));
}
