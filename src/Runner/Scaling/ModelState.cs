using Engine.Nn;

namespace Engine.Runner.Scaling;

/// <summary>
/// What a ResNet holds, counted from its configuration without building it: every parameter tensor's
/// length in registration (forward) order, and the BN buffer floats (running mean and variance).
/// The counts follow <see cref="ResNet"/>'s constructor one for one (a test builds the model and compares).
/// </summary>
public sealed record ModelState(string Name, IReadOnlyList<long> ParameterLengths, long BufferCount, int Classes)
{
    public long ParameterCount => ParameterLengths.Sum();
    public long ParameterBytes => ParameterCount * sizeof(float);
    public long BufferBytes => BufferCount * sizeof(float);

    /// <summary>FSDP's units in forward order (stem, each BasicBlock, head: <see cref="Engine.Nn.Parallel.FullyShardedDataParallel.UnitOf"/>), parameter floats each.</summary>
    public IReadOnlyList<long> UnitLengths { get; init; } = Array.Empty<long>();

    /// <summary>Parameter lengths in the order backward makes their gradients ready (the reverse of forward).</summary>
    public IEnumerable<long> GradientReadyOrder => ParameterLengths.Reverse();

    public static ModelState Of(ResNetConfig config)
    {
        var parameters = new List<long>();
        var units = new List<long>();
        long buffers = 0;
        int unitStart = 0;
        void EndUnit()
        {
            units.Add(parameters.Skip(unitStart).Sum());
            unitStart = parameters.Count;
        }
        void Conv(int cin, int cout, int k) => parameters.Add((long)cout * cin * k * k);
        void Bn(int c)
        {
            parameters.Add(c);
            parameters.Add(c);
            buffers += 2L * c;
        }

        int w = config.Width;
        Conv(config.InChannels, w, config.Stem == "imagenet" ? 7 : 3);
        Bn(w);
        EndUnit(); // the stem
        int inPlanes = w;
        int[] blocks = config.Blocks;
        for (int layer = 0; layer < 4; layer++)
        {
            int planes = w << layer;
            for (int b = 0; b < blocks[layer]; b++)
            {
                int stride = layer > 0 && b == 0 ? 2 : 1;
                Conv(inPlanes, planes, 3);
                Bn(planes);
                Conv(planes, planes, 3);
                Bn(planes);
                if (stride != 1 || inPlanes != planes)
                {
                    Conv(inPlanes, planes, 1);
                    Bn(planes);
                }
                inPlanes = planes;
                EndUnit(); // one BasicBlock
            }
        }
        parameters.Add((long)config.Classes * inPlanes);
        parameters.Add(config.Classes);
        EndUnit(); // the head
        return new ModelState(config.ModelName, parameters, buffers, config.Classes) { UnitLengths = units };
    }
}
