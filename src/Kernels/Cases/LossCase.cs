namespace Engine.Kernels.Cases;

/// <summary>The shapes the softmax + cross-entropy cases share.</summary>
public static class LossCase
{
    /// <summary>(n, classes): CIFAR's 10 classes; rows beyond a CPU group (16), so threads own several; one class; three.</summary>
    public static IReadOnlyList<(int N, int Classes)> Shapes { get; } = [(5, 10), (7, 3), (37, 10), (1, 1), (37, 3)];

    public static IReadOnlyList<(int N, int Classes)> LargeShapes { get; } = [(512, 10)];

    /// <summary>Logits in [-5, 5], with every other row's label made the clear maximum so that the correct count is not trivially 0.</summary>
    public static (float[] Logits, int[] Labels) Inputs(Random rng, int n, int classes)
    {
        float[] logits = CaseInputs.Uniform(rng, (long)n * classes, -5, 5);
        int[] labels = CaseInputs.Labels(rng, n, classes);
        for (int r = 0; r < n; r += 2) logits[(long)r * classes + labels[r]] = 6f;
        return (logits, labels);
    }
}
