using System.Text.Json;
using System.Text.RegularExpressions;
using Engine.Kernels;
using Engine.Nn;
using Engine.Nn.Layers;
using Engine.Runner.Bench;
using Engine.Tests;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Device = Engine.Kernels.Device;

namespace Engine.Runner.Tests;

/// <summary>engine bench kernels: the model's shapes, validation before timing, the fastest-correct mark, the ceilings. No timing value is asserted.</summary>
public class BenchKernelsTests
{
    private static readonly string[] StepOpNames =
    [
        "augment", "conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weight", "batchnorm_fwd_train", "batchnorm_bwd", "batchnorm_relu_fwd_train", "batchnorm_relu_bwd",
        "batchnorm_add_relu_fwd_train", "batchnorm_add_relu_bwd", "add_fwd", "maxpool_fwd", "maxpool_bwd", "avgpool_fwd", "avgpool_bwd", "linear_fwd", "linear_bwd", "softmax_xent_fwd", "softmax_xent_bwd", "sgd_step",
    ];

    /// <summary>
    /// One real training step of a narrow ResNet under the kernel profiler: its conv layers' shapes, its
    /// parameter count, and every kernel's launch count, FLOPs and bytes equal what ModelShapes predicts.
    /// </summary>
    [Theory]
    [InlineData("resnet18", "imagenet", 2, 2)]
    [InlineData("resnet18", "cifar", 3, 3)]
    [InlineData("resnet34", "imagenet", 1, 2)]
    public void Shapes_equal_the_layer_shapes_and_kernel_counts_of_a_real_step(string model, string stem, int width, int batch)
    {
        ResNetConfig config = ResNetConfig.Parse(model, stem, width);
        ModelShapes shapes = ModelShapes.FromConfig(config, batch);
        TestDevice.Use(dev =>
        {
            using var net = new ResNet(dev, config);
            net.Initialize(seed: 5);
            using var sgd = new SgdOptimizer(dev, net.Store, 0.1f, 0.9f, 5e-4f);
            using var loss = new CrossEntropyLoss(dev);
            var rng = new Random(3);
            var images = new byte[batch * 3 * 32 * 32];
            rng.NextBytes(images);
            using var dImages = dev.Upload<byte>(images);
            using var crops = dev.Upload<int>(Enumerable.Range(0, 2 * batch).Select(_ => rng.Next(9)).ToArray());
            using var flips = dev.Upload<int>(Enumerable.Range(0, batch).Select(_ => rng.Next(2)).ToArray());
            using var mean = dev.Upload<float>([0.49f, 0.48f, 0.45f]);
            using var std = dev.Upload<float>([0.25f, 0.24f, 0.26f]);
            using var labels = dev.Upload<int>(Enumerable.Range(0, batch).Select(_ => rng.Next(10)).ToArray());
            using var x = dev.Allocate<float>(images.Length);
            dev.Synchronize();

            var profiler = new KernelProfiler();
            dev.Profiler = profiler;
            try
            {
                Augment.Apply(dev, dImages.View, crops.View, flips.View, x.View, mean.View, std.View, batch, 3, 32, 32, 4);
                Tensor logits = net.Forward(new Tensor(x.View, [batch, 3, 32, 32]), training: true);
                loss.Forward(logits, labels.View);
                net.Backward(loss.Backward());
                sgd.Step();
                dev.Synchronize();
            }
            finally
            {
                dev.Profiler = null;
            }

            Assert.Equal(net.Store.ParameterCount, shapes.Parameters);
            var layerConvs = ConvLayers(net).Select(c => c.Shape).GroupBy(s => s).ToDictionary(g => g.Key, g => g.Count());
            Assert.Equal(layerConvs.OrderBy(k => k.Key.ToString()), shapes.Convs.ToDictionary(u => u.Shape, u => u.PerStep).OrderBy(k => k.Key.ToString()));

            var expected = shapes.StepOps().GroupBy(o => o.Op).ToDictionary(g => g.Key,
                g => (Calls: g.Sum(o => o.PerStep), Flops: g.Sum(o => o.PerStep * o.Cost.Flops), Bytes: g.Sum(o => o.PerStep * o.Cost.Bytes)));
            var actual = profiler.Stats().ToDictionary(s => s.Name, s => (s.Calls, s.Flops, s.Bytes));
            Assert.Equal(expected.OrderBy(k => k.Key), actual.OrderBy(k => k.Key));
            Assert.Equal(stem == "imagenet" ? StepOpNames.Order() : StepOpNames.Where(n => !n.StartsWith("maxpool", StringComparison.Ordinal)).Order(),
                expected.Keys.Order());
        });
    }

    private static IEnumerable<Conv2dLayer> ConvLayers(ResNet net)
    {
        foreach (Module m in net.Modules)
        {
            if (m is Conv2dLayer c) yield return c;
            if (m is BasicBlock b)
            {
                foreach (Conv2dLayer bc in b.Children().OfType<Conv2dLayer>()) yield return bc;
            }
        }
    }

    /// <summary>
    /// The whole harness on the CPU accelerator at a tiny model, with two deliberately wrong variants
    /// in the table: a no-op block tail, bn + add + relu (leaves its NaN-poisoned output, and is the quickest thing there is)
    /// and an add that is off by 0.1% (ten times the tolerance).
    /// </summary>
    [Fact]
    public void Harness_validates_every_op_of_the_step_and_never_marks_a_wrong_variant_fastest()
    {
        ModelShapes shapes = ModelShapes.FromConfig(ResNetConfig.Parse("resnet18", "imagenet", 2), 2);
        var table = new KernelVariants();
        // Every ReLU of a step rides on a batch norm, so the no-op stands in for the fused block tail.
        table.BatchNormAddReluForward.Add(new("no-op (wrong on purpose)", 4, (d, x, id, g, b, y, mean, inv, rm, rv, n, c, hw, momentum, eps) => { }));
        table.Add.Add(new("add then scale by 1.001 (wrong on purpose)", 3, (d, a, b, y) =>
        {
            Elementwise.Add(d, a, b, y);
            Elementwise.Scale(d, y, 1.001f);
        }));
        // A variant that throws, as a kernel the driver refuses would: its row fails, the bench goes on.
        table.Sgd.Add(new("throws (on purpose)", 3, (d, p, g, m, lr, mo, wd, first) => throw new InvalidOperationException("refused on purpose")));
        // A tiny reference budget, so the larger shapes are checked at a smaller batch as on a big CPU run;
        // jobs prepared ahead with their references running in the background, as on a GPU.
        var settings = new BenchSettings(Runs: 3, Warmup: 1, Validate: true, Seed: 7, CpuCheckWork: 4000, Lookahead: 3);
        BenchReport report = TestDevice.Use(dev => KernelBench.Run(dev, shapes, table, settings, "test", TextWriter.Null));

        Assert.True(report.Ceilings.CopyGBps > 0 && double.IsFinite(report.Ceilings.CopyGBps));
        Assert.True(report.Ceilings.FmaGflops > 0 && double.IsFinite(report.Ceilings.FmaGflops));
        Assert.Equal(StepOpNames.Order(), report.Rows.Select(r => r.Op).Distinct().Order());
        Assert.Equal(shapes.StepOps().Select(o => (o.Op, o.Shape, o.PerStep)).Order(),
            report.Rows.Where(r => r.Version == 1).Select(r => (r.Op, r.Shape, r.PerStep)).Order());

        foreach (BenchRow r in report.Rows.Where(r => r.Version == 1))
        {
            Assert.True(r.Passed == true, $"{r.Op} {r.Shape}: error {r.Error} at {r.CheckedAt}");
            Assert.True(r.MedianMs >= 0 && double.IsFinite(r.MedianMs), $"{r.Op} {r.Shape}: median {r.MedianMs}");
        }
        Assert.Contains(report.Rows, r => r.CheckedAt != "real shape" && r.CheckedAt!.StartsWith("N=1 ", StringComparison.Ordinal));
        Assert.Contains(report.Rows, r => r.CheckedAt == "real shape");

        BenchRow threw = Assert.Single(report.Rows, r => r.Variant == "throws (on purpose)");
        Assert.False(threw.Passed);
        Assert.False(threw.Fastest);
        Assert.Contains("refused on purpose", threw.Failure);
        Assert.Contains("FAIL threw InvalidOperationException: refused on purpose", KernelBench.Table(report));
        Assert.Contains(report.Rows, r => r.Op == "sgd_step" && r.Fastest); // the working variants of the op still ran and one was marked

        var wrong = report.Rows.Where(r => r.Variant.EndsWith("(wrong on purpose)", StringComparison.Ordinal)).ToList();
        Assert.Equal(shapes.BatchNormAddRelus.Count + shapes.Adds.Count, wrong.Count);
        Assert.All(wrong, r => Assert.False(r.Passed));
        Assert.All(wrong, r => Assert.False(r.Fastest));
        Assert.All(report.Rows.GroupBy(r => (r.Op, r.Shape)), g => Assert.Single(g, r => r.Fastest));
        var fused = report.Rows.Where(r => r.Op.StartsWith("batchnorm_relu", StringComparison.Ordinal)).ToList();
        Assert.Equal(6 * shapes.BatchNormRelus.Count, fused.Count); // forward and backward, v1 (bn then relu), v2 (fused), v3 (fused, float4)
        Assert.All(fused, r => Assert.True(r.Passed == true, $"v{r.Version} {r.Op} {r.Shape}: error {r.Error}"));
        var tails = report.Rows.Where(r => r.Op.StartsWith("batchnorm_add_relu", StringComparison.Ordinal) && r.Version <= 3).ToList();
        Assert.Equal(6 * shapes.BatchNormAddRelus.Count, tails.Count); // forward and backward, v1 (bn, add, relu), v2 (fused), v3 (fused, float4)
        Assert.All(tails, r => Assert.True(r.Passed == true, $"v{r.Version} {r.Op} {r.Shape}: error {r.Error}"));

        // The CUDA-only TF32 conv forwards (v3, v4) are listed as skipped on the CPU accelerator, never timed.
        Assert.DoesNotContain(report.Rows, r => r.Op == "conv2d_fwd" && r.Version >= 3);
        Assert.Equal(2, report.Skipped!.Count);
        Assert.StartsWith("conv2d_fwd v3 TF32 mma.sync, accumulators in shared memory: skipped, ", report.Skipped[0]);
        Assert.StartsWith("conv2d_fwd v4 TF32 mma.sync, accumulators in registers: skipped, ", report.Skipped[1]);
        Assert.All(report.Skipped, l => Assert.Contains("runs only on CUDA GPUs", l));

        string text = KernelBench.Table(report);
        Assert.All(report.Skipped, l => Assert.Contains(l, text));
        Assert.Contains("FAIL", text);
        Assert.Contains("no-op (wrong on purpose)", text);

        using JsonDocument json = JsonDocument.Parse(KernelBench.Json(report));
        Assert.Equal(report.Rows.Count, json.RootElement.GetProperty("rows").GetArrayLength());
        Assert.True(json.RootElement.GetProperty("ceilings").GetProperty("copy_gb_per_second").GetDouble() > 0);
    }

    /// <summary>With --validate false nothing is checked, and the fastest variant is still marked (as unvalidated).</summary>
    [Fact]
    public void Without_validation_rows_are_unchecked()
    {
        ModelShapes shapes = ModelShapes.FromConfig(ResNetConfig.Parse("resnet18", "cifar", 1), 1);
        BenchReport report = TestDevice.Use(dev => KernelBench.Run(dev, shapes, new KernelVariants(), new BenchSettings(Runs: 1, Warmup: 0, Validate: false), "test", TextWriter.Null));
        Assert.All(report.Rows, r => Assert.Null(r.Passed));
        Assert.All(report.Rows.GroupBy(r => (r.Op, r.Shape)), g => Assert.Single(g, r => r.Fastest));
        Assert.Contains("not validated", KernelBench.Table(report));
    }

    /// <summary>--ops keeps the ops whose names start with one of its prefixes, and every variant of them.</summary>
    [Fact]
    public void Ops_selects_the_ops_by_name_prefix()
    {
        ModelShapes shapes = ModelShapes.FromConfig(ResNetConfig.Parse("resnet18", "cifar", 1), 1);
        var settings = new BenchSettings(Runs: 1, Warmup: 0, Validate: false, Ops: ["linear", "add_fwd"]);
        BenchReport report = TestDevice.Use(dev => KernelBench.Run(dev, shapes, new KernelVariants(), settings, "test", TextWriter.Null));
        Assert.Equal(["add_fwd", "linear_bwd", "linear_fwd"], report.Rows.Select(r => r.Op).Distinct().Order());
        Assert.Equal(new KernelVariants().Add.Count * shapes.Adds.Count, report.Rows.Count(r => r.Op == "add_fwd"));
        Assert.Contains("only the ops starting linear, add_fwd", KernelBench.Table(report));
    }

    /// <summary>
    /// The FMA ceiling kernel is what it claims on a GPU: 32 multiply-adds per loop iteration in
    /// registers (no local memory, no loads, no calls), as unrounded mul.f32 + add.f32 pairs that
    /// ptxas may contract into FFMA (a .rn modifier would forbid it); Nsight name bench_fma.
    /// </summary>
    [Fact]
    public void Fma_kernel_compiles_to_contractible_multiply_adds_in_registers()
    {
        var method = typeof(DeviceCeilings).GetMethod(nameof(DeviceCeilings.FmaKernel))!;
        using var context = Context.Create(b => b.Optimize(OptimizationLevel.O1).AllAccelerators().EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_88, null);
        var kernel = (PTXCompiledKernel)backend.Compile(EntryPointDescription.FromImplicitlyGroupedKernel(method), KernelSpecialization.Empty);
        string ptx = kernel.PTXAssembly;
        Assert.Matches(new Regex(@"\.entry\s+Kernel_bench_fma\b"), ptx);
        Assert.DoesNotMatch(new Regex(@"\.local\b|\bld\.global|\bcall\b|\b(mul|add|fma)\.r[nzmp]\.f32"), ptx);
        int muls = Regex.Matches(ptx, @"\bmul\.f32\b").Count, adds = Regex.Matches(ptx, @"\badd\.f32\b").Count;
        Assert.True(muls >= DeviceCeilings.FmasPerIteration && adds >= DeviceCeilings.FmasPerIteration, $"{muls} mul.f32, {adds} add.f32 in the PTX:\n{ptx}");
    }
}

/// <summary>The command itself: runs, writes JSON that parses, exits 0 when every variant validates.</summary>
[Collection("console")]
public class BenchKernelsCommandTests
{
    [Fact]
    public void Command_prints_the_table_and_writes_json()
    {
        string path = Path.Combine(Path.GetTempPath(), $"bench-kernels-{Guid.NewGuid():N}.json");
        TextWriter oldOut = Console.Out, oldErr = Console.Error;
        var o = new StringWriter();
        Console.SetOut(o);
        Console.SetError(TextWriter.Null);
        int code;
        try
        {
            code = Program.Main(["bench", "kernels", "--device", "cpu", "--model", "resnet18", "--width", "2", "--batch-size", "2",
                "--runs", "2", "--warmup", "0", "--validate", "true", "--json", path]);
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
        try
        {
            Assert.True(code == 0, o.ToString());
            Assert.Contains("conv2d_bwd_weight", o.ToString());
            Assert.Contains("ceilings: copy", o.ToString());
            using JsonDocument json = JsonDocument.Parse(File.ReadAllText(path));
            Assert.Equal("resnet18", json.RootElement.GetProperty("model").GetProperty("model_name").GetString());
            Assert.True(json.RootElement.GetProperty("rows").GetArrayLength() > 20);
        }
        finally
        {
            File.Delete(path);
        }
    }
}

/// <summary><c>--conv-shape</c>: the conv ops at given shapes instead of the model's, every variant of each pass, and clear errors for bad shapes.</summary>
[Collection("console")]
public class BenchConvShapeTests
{
    [Fact]
    public void Conv_shapes_replace_the_models_and_every_variant_of_each_pass_runs()
    {
        var uses = Engine.Runner.Commands.BenchKernelsCommand.ParseConvShapes("3,7,6,5,3,3,1,1; 4,8,8,8,1,1,2,0", 2);
        Assert.Equal([new Conv2dShape(2, 3, 7, 6, 5, 3, 3, 1, 1), new Conv2dShape(2, 4, 8, 8, 8, 1, 1, 2, 0)], uses.Select(u => u.Shape));
        Assert.All(uses, u => Assert.True(u.PerStep == 1 && u.BackwardDataPerStep == 1));

        var (code, output, err) = Cli.Run("bench", "kernels", "--device", "cpu", "--model", "resnet18", "--width", "2", "--batch-size", "2",
            "--runs", "1", "--warmup", "0", "--ops", "conv2d", "--conv-shape", "3,7,6,5,3,3,1,1");
        Assert.True(code == 0, output + err);
        var variants = new KernelVariants();
        foreach (var (op, count) in new[] { ("conv2d_fwd ", variants.ConvForward.Count(v => v.Precision == Engine.Kernels.Cases.Precision.Fp32)),
                     ("conv2d_bwd_data ", variants.ConvBackwardData.Count), ("conv2d_bwd_weight ", variants.ConvBackwardWeight.Count) })
        {
            var rows = output.Split('\n').Where(l => l.StartsWith(op, StringComparison.Ordinal) && !l.Contains(": skipped", StringComparison.Ordinal)).ToList();
            Assert.True(rows.Count == count && rows.All(r => r.Contains("C=3 H=7 W=6 K=5", StringComparison.Ordinal)), $"{op}: {string.Join('\n', rows)}");
        }
        Assert.DoesNotContain("batchnorm", output);
    }

    [Theory]
    [InlineData("3,7,6,5,3,3,1", "eight integers")]
    [InlineData("3,7,6,five,3,3,1,1", "eight integers")]
    [InlineData("3,2,2,5,7,7,1,0", "does not fit")]
    [InlineData(" ; ", "at least one shape")]
    public void Bad_conv_shapes_are_refused_naming_the_shape(string text, string reason)
    {
        var e = Assert.Throws<ArgumentException>(() => Engine.Runner.Commands.BenchKernelsCommand.ParseConvShapes(text, 2));
        Assert.Contains(reason, e.Message);
    }
}

/// <summary>
/// The bench on the simulated GPU (functional mode in CI: no cycles pass, so only the plumbing is checked here; the
/// cycle counts come from a timing configuration, docs/PERF.md): rows validated on CUDA, no ceilings, and the clock
/// that turns its event times back into cycles is the configuration's core clock.
/// </summary>
[Collection("console")]
[Trait("Category", "SimulatedGpu")]
public class SimulatedGpuBenchKernelsTests
{
    [SimulatedGpuFact]
    public void Bench_rows_validate_on_the_simulated_gpu_and_carry_its_core_clock()
    {
        SimulatedGpu.EnterWorkingFolder();
        using Device dev = Device.Create("cuda");
        Assert.True(dev.IsSimulated, $"{dev} is not the simulated GPU");
        ModelShapes shapes = ModelShapes.FromConfig(ResNetConfig.Parse("resnet18", "imagenet", 1), 2);
        var settings = new BenchSettings(Runs: 1, Warmup: 0, Validate: true, Ops: ["sgd_step", "add_fwd"]);
        BenchReport report = KernelBench.Run(dev, shapes, new KernelVariants(), settings, "test", TextWriter.Null);

        Assert.NotEmpty(report.Rows);
        Assert.All(report.Rows, r => Assert.True(r.Passed == true, $"v{r.Version} {r.Op} {r.Shape}: error {r.Error} {r.Failure}"));
        Assert.False(report.Ceilings.Measured);
        Assert.Equal(SimulatedGpu.CoreClockHz(), report.SimulatedClockHz);
        Assert.Equal(Math.Round(2e-3 * SimulatedGpu.CoreClockHz()), report.Cycles(2));
        string table = KernelBench.Table(report);
        Assert.Contains("sim cycles", table);
        Assert.Contains("ceilings: not measured", table);
    }
}
