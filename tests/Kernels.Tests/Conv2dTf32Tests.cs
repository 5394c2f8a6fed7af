using System.Reflection;
using System.Text.RegularExpressions;
using Engine.Kernels;
using Engine.Tests;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels.Tests;

/// <summary>
/// The TF32 tensor-core convolution, checked without a GPU: its PTX (for Ampere and Hopper) holds the
/// tensor-core and TF32-rounding instructions and no local memory, the launcher refuses the CPU, and its
/// float64 TF32 reference agrees with the exact reference within the tolerance the GPU check will use.
/// </summary>
public class Conv2dTf32Tests
{
    public static TheoryData<string> Architectures => new() { "SM_80", "SM_90" };

    /// <summary>Both TF32 kernels (accumulators in registers, and the shared-memory version kept for the bench) on both architectures.</summary>
    public static TheoryData<string, string> KernelsAndArchitectures => TheoryRows.Of(
        from k in new[] { "ForwardKernel", "ForwardSharedAccumulatorsKernel" } from a in new[] { "SM_80", "SM_90" } select (k, a));

    private static string CompilePtx(CudaArchitecture arch, string kernel = "ForwardKernel")
    {
        MethodInfo method = typeof(Conv2dTf32).GetMethod(kernel, BindingFlags.Static | BindingFlags.NonPublic)!;
        var entry = EntryPointDescription.FromExplicitlyGroupedKernel(method);
        using var context = Context.Create(b => b.Optimize(OptimizationLevel.O1).AllAccelerators().EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(arch), arch, CudaInstructionSet.ISA_88, null);
        return ((PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty)).PTXAssembly;
    }

    [Theory]
    [MemberData(nameof(KernelsAndArchitectures))]
    public void Ptx_uses_tf32_mma_and_rounding_and_no_local_memory(string kernel, string architecture)
    {
        var arch = architecture == "SM_80" ? CudaArchitecture.SM_80 : CudaArchitecture.SM_90;
        string ptx = CompilePtx(arch, kernel);

        Assert.Matches(new Regex(@"\.entry\s+Kernel_conv2d_fwd_tf32(_smem_acc)?\b"), ptx);
        // Two chained mma per 16-deep slice, each writing 4 f32 registers from 4 A, 2 B registers and the same 4 accumulators.
        var mma = new Regex(@"mma\.sync\.aligned\.m16n8k8\.row\.col\.f32\.tf32\.tf32\.f32\s*\{[^}]*\},\s*\{[^}]*\},\s*\{[^}]*\},\s*\{[^}]*\};");
        int mmas = mma.Matches(ptx).Count;
        Assert.True(mmas >= 2, $"expected the two chained mma.sync m16n8k8 tf32 instructions of a 16-deep slice, found {mmas}");
        Assert.Contains("cvt.rna.tf32.f32", ptx);
        Assert.False(Regex.IsMatch(ptx, @"\.local\b"), $"{architecture}: conv2d_fwd_tf32 uses .local memory:\n" +
            string.Join('\n', ptx.Split('\n').Where(l => l.Contains(".local")).Take(5)));
    }

    /// <summary>
    /// The accumulators never pass through memory: declared once as .reg acc0..acc15, each of the 8 mma per
    /// slice (2 x 2 tiles, two k8 steps) reads and writes four of them by name, every accumulator is used, and
    /// the results leave them only by mov. A kernel that gave them to the mma as operands would show ld/st
    /// around each mma instead.
    /// </summary>
    [Theory]
    [MemberData(nameof(Architectures))]
    public void Register_kernel_names_its_accumulators_in_every_mma(string architecture)
    {
        string ptx = CompilePtx(architecture == "SM_80" ? CudaArchitecture.SM_80 : CudaArchitecture.SM_90);
        Assert.Single(Regex.Matches(ptx, @"\.reg\s+\.f32\s+acc<16>;"));
        var mma = new Regex(@"mma\.sync\.aligned\.m16n8k8\.row\.col\.f32\.tf32\.tf32\.f32\s*\{(acc\d+(?:, acc\d+){3})\},\s*\{[^}]*\},\s*\{[^}]*\},\s*\{(acc\d+(?:, acc\d+){3})\};");
        var matches = mma.Matches(ptx);
        Assert.Equal(8, matches.Count);
        Assert.All(matches, m => Assert.Equal(m.Groups[1].Value, m.Groups[2].Value));
        var used = matches.SelectMany(m => m.Groups[1].Value.Split(", ")).Distinct().ToArray();
        Assert.Equal(16, used.Length);
        Assert.Equal(16, Regex.Matches(ptx, @"mov\.f32\s+%f\d+, acc\d+;").Count);
    }

    [CpuFact("the TF32 launcher refuses the CPU accelerator; on CUDA it launches")]
    public void Forward_refuses_the_cpu_device_with_a_clear_message() => TestDevice.Use(dev =>
    {
        var s = new Conv2dShape(1, 2, 4, 4, 3, 3, 3, 1, 1);
        using var x = dev.Allocate<float>(s.InputLength);
        using var w = dev.Allocate<float>(s.WeightLength);
        using var y = dev.Allocate<float>(s.OutputLength);
        var e = Assert.Throws<NotSupportedException>(() => Conv2dTf32.Forward(dev, x.View, w.View, y.View, s));
        Assert.Contains("CUDA", e.Message);
        Assert.Contains("Conv2d.Forward", e.Message);
    });

    [Fact]
    public void RoundToTf32_keeps_10_mantissa_bits_rounding_to_nearest_ties_away()
    {
        float ulp = MathF.Pow(2, -10); // TF32's spacing just above 1
        Assert.Equal(1f, Conv2dTf32.Reference.RoundToTf32(1f));
        Assert.Equal(1f + ulp, Conv2dTf32.Reference.RoundToTf32(1f + ulp));
        Assert.Equal(1f, Conv2dTf32.Reference.RoundToTf32(1f + ulp / 4));
        Assert.Equal(1f + ulp, Conv2dTf32.Reference.RoundToTf32(1f + 3 * ulp / 4));
        Assert.Equal(1f + ulp, Conv2dTf32.Reference.RoundToTf32(1f + ulp / 2));                // tie: away from zero
        Assert.Equal(-(1f + ulp), Conv2dTf32.Reference.RoundToTf32(-(1f + ulp / 2)));
        Assert.Equal(1f + 2 * ulp, Conv2dTf32.Reference.RoundToTf32(1f + 3 * ulp / 2));        // tie above an odd one: still away
        Assert.Equal(2f, Conv2dTf32.Reference.RoundToTf32(2f - MathF.Pow(2, -23)));            // carries into the exponent
        Assert.Equal(0f, Conv2dTf32.Reference.RoundToTf32(0f));
        Assert.True(float.IsNaN(Conv2dTf32.Reference.RoundToTf32(float.NaN)));
        Assert.Equal(float.PositiveInfinity, Conv2dTf32.Reference.RoundToTf32(float.PositiveInfinity));

        var rng = Numerics.NewRandom(out int seed);
        foreach (float v in Numerics.Uniform(rng, 1000, -100f, 100f))
        {
            float r = Conv2dTf32.Reference.RoundToTf32(v);
            Assert.True((BitConverter.SingleToUInt32Bits(r) & 0x1FFFu) == 0, $"{v:R} -> {r:R} keeps more than 10 mantissa bits (seed {seed})");
            Assert.True(Math.Abs(r - v) <= Math.Abs(v) * MathF.Pow(2, -11), $"{v:R} -> {r:R} is more than half a TF32 step away (seed {seed})");
        }
    }

    /// <summary>ResNet-like kernels at small sizes, with C·R·S from 1 to 576 (the tolerance grows as its square root).</summary>
    public static TheoryData<int, int, int, int, int, int, int, int, int> Shapes => new()
    {
        { 2, 3, 7, 7, 5, 3, 3, 1, 1 },
        { 1, 6, 9, 9, 5, 1, 1, 2, 0 },
        { 1, 3, 11, 11, 5, 7, 7, 2, 3 },
        { 1, 64, 6, 6, 4, 3, 3, 1, 1 },
        { 1, 1, 1, 1, 1, 1, 1, 1, 0 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Tf32_reference_is_within_the_stated_tolerance_of_the_exact_one(int n, int c, int h, int w, int k, int r, int s, int stride, int pad)
    {
        var shape = new Conv2dShape(n, c, h, w, k, r, s, stride, pad);
        var rng = Numerics.NewRandom(out int seed);
        float[] x = Numerics.Uniform(rng, (int)shape.InputLength), wt = Numerics.Uniform(rng, (int)shape.WeightLength);
        double[] exact = Conv2d.Reference.Forward(Numerics.ToDouble(x), Numerics.ToDouble(wt), shape);
        double[] tf32 = Conv2dTf32.Reference.Forward(Numerics.ToDouble(x), Numerics.ToDouble(wt), shape);
        var (rtol, atol) = Conv2dTf32.Tolerance(shape);
        Numerics.AssertClose(exact, Array.ConvertAll(tf32, v => (float)v), rtol, atol, what: $"TF32 reference vs exact, {shape}", seed: seed);
    }

    /// <summary>The TF32 reference really rounds: at 576 terms it leaves the fp32 tolerance that the exact kernels meet.</summary>
    [Fact]
    public void Tf32_reference_differs_from_the_exact_one_by_more_than_fp32_rounding()
    {
        var shape = new Conv2dShape(1, 64, 6, 6, 4, 3, 3, 1, 1);
        var rng = Numerics.NewRandom(out int seed);
        float[] x = Numerics.Uniform(rng, (int)shape.InputLength), wt = Numerics.Uniform(rng, (int)shape.WeightLength);
        double[] exact = Conv2d.Reference.Forward(Numerics.ToDouble(x), Numerics.ToDouble(wt), shape);
        double[] tf32 = Conv2dTf32.Reference.Forward(Numerics.ToDouble(x), Numerics.ToDouble(wt), shape);
        double worst = exact.Zip(tf32, (e, t) => Math.Abs(e - t)).Max();
        Assert.True(worst > 1e-4, $"TF32 reference is within {worst:G3} of the exact one at {shape}: inputs were not rounded (seed {seed})");
    }
}
