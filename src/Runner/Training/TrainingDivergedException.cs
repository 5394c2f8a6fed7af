namespace Engine.Runner.Training;

/// <summary>The loss became NaN or infinite: the run stops and says where.</summary>
public sealed class TrainingDivergedException(int epoch, int step, float loss)
    : Exception($"Training diverged: loss is {loss} at epoch {epoch}, step {step}. Lower --lr or check the data.")
{
    public int Epoch { get; } = epoch;
    public int Step { get; } = step;
}
