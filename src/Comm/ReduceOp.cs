namespace Engine.Comm;

/// <summary>How a reducing collective combines the ranks' values (NCCL's ncclSum and ncclAvg).</summary>
public enum ReduceOp
{
    /// <summary>The element-wise sum over all ranks.</summary>
    Sum,

    /// <summary>The sum divided by the world size (what DDP applies to gradients).</summary>
    Avg,
}
