using System.CommandLine;
using Engine.Nn;
using Engine.Runner.Bench;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Commands;

/// <summary>
/// <c>engine bench kernels</c>: every kernel of a training step at the model's real layer shapes,
/// validated against its float64 reference, timed (median after warm-up), and read against the
/// device's copy bandwidth and FMA rate measured in the same run. See docs/BENCH.md.
/// </summary>
internal static class BenchKernelsCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "auto | cpu | cuda | cuda:N", DefaultValueFactory = _ => "auto" };
        var model = new Option<string>("--model") { Description = "resnet18 | resnet34", DefaultValueFactory = _ => "resnet34" };
        var stem = new Option<string>("--stem") { Description = "imagenet | cifar", DefaultValueFactory = _ => "imagenet" };
        var width = new Option<int>("--width") { Description = "Base channels (64 in torchvision).", DefaultValueFactory = _ => 64 };
        var batch = new Option<int>("--batch-size") { Description = "Images per step.", DefaultValueFactory = _ => 512 };
        var runs = new Option<int>("--runs") { Description = "Timed runs per kernel variant (the median is reported).", DefaultValueFactory = _ => 30 };
        var warmup = new Option<int>("--warmup") { Description = "Untimed runs first.", DefaultValueFactory = _ => 5 };
        var validate = new Option<bool>("--validate") { Description = "true | false: check every variant against its float64 reference first.", DefaultValueFactory = _ => true };
        var seed = new Option<int>("--seed") { Description = "Seed of the random operands.", DefaultValueFactory = _ => 1 };
        var json = new Option<string?>("--json") { Description = "Also write the report as JSON to this file." };
        var ops = new Option<string?>("--ops") { Description = "Only these ops (comma-separated name prefixes: conv2d_bwd_data,relu,batchnorm_relu); every op by default." };
        var convShapes = new Option<string?>("--conv-shape")
        {
            Description = "The conv ops at these shapes instead of the model's: C,H,W,K,R,S,STRIDE,PAD (N is --batch-size), several separated by ';'.",
        };

        var command = new Command("kernels", "Every kernel of a training step at the model's layer shapes: validated, timed, and compared with the device's copy and FMA ceilings.")
        {
            device, model, stem, width, batch, runs, warmup, validate, seed, json, ops, convShapes,
        };
        command.SetAction(parse => CliErrors.Run(() =>
        {
            ResNetConfig config = ResNetConfig.Parse(parse.GetValue(model)!, parse.GetValue(stem)!, parse.GetValue(width));
            ModelShapes shapes = ModelShapes.FromConfig(config, parse.GetValue(batch));
            if (parse.GetValue(convShapes) is string given)
            {
                shapes = shapes with { Convs = ParseConvShapes(given, shapes.Batch) };
            }
            string[]? only = parse.GetValue(ops)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (only is { Length: 0 }) throw new ArgumentException("--ops needs at least one op name prefix (conv2d_bwd_data, relu, batchnorm_relu, ...).");
            var settings = new BenchSettings(parse.GetValue(runs), parse.GetValue(warmup), parse.GetValue(validate), parse.GetValue(seed), Ops: only);
            if (settings.Runs < 1) throw new ArgumentException($"--runs must be at least 1, got {settings.Runs}.");
            if (settings.Warmup < 0) throw new ArgumentException($"--warmup must be non-negative, got {settings.Warmup}.");
            using Device dev = Device.Create(parse.GetValue(device)!);
            string commandLine = "engine " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1));
            BenchReport report = KernelBench.Run(dev, shapes, new KernelVariants(), settings, commandLine, Console.Error);
            Console.Write(KernelBench.Table(report));
            if (parse.GetValue(json) is string path)
            {
                File.WriteAllText(path, KernelBench.Json(report));
                Console.WriteLine($"wrote {path}");
            }
            return report.Rows.Any(r => r.Passed == false) ? 1 : 0;
        }));
        return command;
    }

    /// <summary>"C,H,W,K,R,S,STRIDE,PAD[;...]" at batch <paramref name="n"/>, each launched once per step (forward, backward-data and backward-weight).</summary>
    /// <exception cref="ArgumentException">A shape has other than eight integers, or is not a valid convolution; the message names it.</exception>
    internal static IReadOnlyList<ConvUse> ParseConvShapes(string text, int n)
    {
        var uses = new List<ConvUse>();
        foreach (string one in text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            string[] parts = one.Split(',', StringSplitOptions.TrimEntries);
            var v = new int[parts.Length];
            if (parts.Length != 8 || parts.Where((p, i) => !int.TryParse(p, System.Globalization.CultureInfo.InvariantCulture, out v[i])).Any())
            {
                throw new ArgumentException($"--conv-shape '{one}': expected eight integers C,H,W,K,R,S,STRIDE,PAD.");
            }
            var shape = new Engine.Kernels.Conv2dShape(n, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
            try
            {
                shape.Validate();
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"--conv-shape '{one}': {e.Message}", e);
            }
            uses.Add(new ConvUse(shape, 1, 1));
        }
        if (uses.Count == 0) throw new ArgumentException("--conv-shape needs at least one shape C,H,W,K,R,S,STRIDE,PAD.");
        return uses;
    }
}
