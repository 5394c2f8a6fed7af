using Device = Engine.Kernels.Device;

namespace Engine.Nn;

/// <summary>
/// A layer with a hand-written backward. <see cref="Forward"/> keeps what backward needs;
/// <see cref="Backward"/> takes dL/dy, returns dL/dx and writes its parameters' gradients
/// (overwriting them: every parameter is used once per forward in ResNet).
/// </summary>
public abstract class Module : IDisposable
{
    protected Module(Device device, string name)
    {
        Device = device;
        Name = name;
    }

    public Device Device { get; }

    /// <summary>torchvision's module path (<c>layer2.0.conv1</c>), the prefix of its state entries.</summary>
    public string Name { get; }

    public abstract Tensor Forward(Tensor x, bool training);

    public abstract Tensor Backward(Tensor dy);

    /// <summary>Raised after a parameter's gradient kernel has been launched on the device's stream.</summary>
    public event Action<Parameter>? GradientReady;

    protected void RaiseGradientReady(Parameter p) => GradientReady?.Invoke(p);

    /// <summary>Forwards the children's gradient-ready events to this module's listeners.</summary>
    protected void Adopt(Module child) => child.GradientReady += RaiseGradientReady;

    /// <summary>Multiply-adds*2 of the last forward (for profiles); 0 where negligible.</summary>
    public virtual long ForwardFlops => 0;

    public virtual void Dispose() => GC.SuppressFinalize(this);

    protected static string Join(string prefix, string name) => prefix.Length == 0 ? name : $"{prefix}.{name}";

    protected static void ExpectRank(Tensor x, int rank, string who)
    {
        if (x.Rank != rank) throw new ArgumentException($"{who} expects a rank-{rank} input, got {x}.");
    }
}
