using Engine.Kernels.Cases;
using Engine.Tests;
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels.Tests;

/// <summary>
/// The op cases fail kernels that are wrong on purpose, naming the output that is off: the engine's own
/// launcher followed by a small error in one element of one output, a kernel that writes nothing (the
/// outputs stay poisoned), one that writes an input it must leave alone, one that reads what it must not.
/// The same cases run the kernel tests, `engine check kernels` and `engine bench kernels`, so a case
/// that cannot fail would let all three pass a broken kernel.
/// </summary>
public class CasesCatchWrongKernelsTests
{
    /// <summary>Adds 1% of (1 + |v|) to element <paramref name="i"/> (from the end when negative): far above every case's tolerance.</summary>
    private static void Nudge(Device dev, ArrayView<float> view, long i = -1)
    {
        var one = view.SubView(i < 0 ? view.Length + i : i, 1);
        float[] v = dev.Download(one);
        v[0] += 0.01f * (1 + MathF.Abs(v[0]));
        one.CopyFromCPU(dev.Stream, v);
    }

    /// <summary><paramref name="output"/> fails; every other output passes, except those in <paramref name="dependents"/>, which may fail too.</summary>
    private static void AssertNames(CheckResult r, string output, params string[] dependents)
        => Assert.True(r.Outputs.Any(o => o.Output == output && !o.Passed) && r.Outputs.Where(o => o.Output != output && !dependents.Contains(o.Output)).All(o => o.Passed),
            $"expected '{output}' to fail and no other output but {string.Join(", ", dependents)}: {string.Join("; ", r.Outputs)}");

    [Theory]
    [InlineData(ConvPass.Forward)]
    [InlineData(ConvPass.BackwardData)]
    [InlineData(ConvPass.BackwardWeight)]
    public void Conv_case_fails_one_wrong_element_and_an_unwritten_output(ConvPass pass) => TestDevice.Use(dev =>
    {
        var s = new Conv2dShape(2, 3, 7, 6, 5, 3, 3, 2, 1);
        ConvLauncher right = ConvCase.Default(pass);
        AssertNames(CaseAsserts.Fails(r => new ConvCase(dev, r, s, pass),
            (Device d, ArrayView<float> a, ArrayView<float> b, ArrayView<float> o, in Conv2dShape sh) => { right(d, a, b, o, sh); Nudge(d, o); },
            "one element off by 1%"), "out");
        CheckResult none = CaseAsserts.Fails(r => new ConvCase(dev, r, s, pass),
            (Device d, ArrayView<float> a, ArrayView<float> b, ArrayView<float> o, in Conv2dShape sh) => { }, "nothing written");
        Assert.True(double.IsPositiveInfinity(none.Worst), none.ToString());
    });

    /// <summary>y is checked against the normalisation with the kernel's own saved statistics: a wrong statistic fails y as well.</summary>
    [Theory]
    [InlineData("save_mean")]
    [InlineData("save_invstd")]
    [InlineData("y")]
    [InlineData("running_mean")]
    [InlineData("running_var")]
    public void Batch_norm_forward_case_checks_every_output(string output) => TestDevice.Use(dev =>
    {
        var s = new BatchNormShape(3, 4, 5);
        BatchNormForwardLauncher right = BatchNormForwardCase.Default(relu: false);
        AssertNames(CaseAsserts.Fails(r => new BatchNormForwardCase(dev, r, s), (d, x, g, b, y, mean, inv, rm, rv, n, c, hw, m, eps) =>
        {
            right(d, x, g, b, y, mean, inv, rm, rv, n, c, hw, m, eps);
            Nudge(d, output switch { "save_mean" => mean, "save_invstd" => inv, "y" => y, "running_mean" => rm, _ => rv });
        }, $"{output} off by 1%"), output, output.StartsWith("save", StringComparison.Ordinal) ? ["y"] : []);
    });

    [Fact]
    public void Block_tail_cases_fail_a_kernel_that_writes_its_inputs() => TestDevice.Use(dev =>
    {
        var s = new BatchNormShape(2, 3, 8);
        BatchNormAddReluForwardLauncher forward = BatchNormAddReluForwardCase.Default;
        AssertNames(CaseAsserts.Fails(r => new BatchNormAddReluForwardCase(dev, r, s), (d, x, id, g, b, y, mean, inv, rm, rv, n, c, hw, m, eps) =>
        {
            forward(d, x, id, g, b, y, mean, inv, rm, rv, n, c, hw, m, eps);
            Nudge(d, id, 0);
        }, "identity overwritten"), "identity (unchanged)");
        BatchNormAddReluBackwardLauncher backward = BatchNormAddReluBackwardCase.Default;
        AssertNames(CaseAsserts.Fails(r => new BatchNormAddReluBackwardCase(dev, r, s), (d, x, y, dy, g, mean, inv, dx, di, dg, db, n, c, hw) =>
        {
            backward(d, x, y, dy, g, mean, inv, dx, di, dg, db, n, c, hw);
            Nudge(d, dy, 0);
        }, "dy overwritten"), "dy (unchanged)");
    });

    [Theory]
    [InlineData("dx")]
    [InlineData("dw")]
    [InlineData("db")]
    public void Linear_backward_case_checks_every_gradient(string output) => TestDevice.Use(dev =>
    {
        LinearBackwardLauncher right = LinearBackwardCase.Default;
        AssertNames(CaseAsserts.Fails(r => new LinearBackwardCase(dev, r, new LinearShape(5, 7, 3)), (d, x, w, dy, dx, dw, db, n, i, o) =>
        {
            right(d, x, w, dy, dx, dw, db, n, i, o);
            Nudge(d, output switch { "dx" => dx, "dw" => dw, _ => db });
        }, $"{output} off by 1%"), output);
    });

    /// <summary>The 16-bit cases compare bits exactly: one pattern off by its last bit fails compression, one float nudged fails decompression.</summary>
    [Theory]
    [InlineData(Float16Format.Fp16)]
    [InlineData(Float16Format.Bf16)]
    public void Float16_cases_fail_one_wrong_bit_pattern(Float16Format format) => TestDevice.Use(dev =>
    {
        AssertNames(CaseAsserts.Fails(r => Float16CompressCase.Of(dev, r, 37, format), (d, x, y, f, scale) =>
        {
            Float16.Compress(d, x, y, f, scale);
            var last = y.SubView(y.Length - 1, 1);
            ushort[] bits = d.Download(last);
            bits[0] ^= 1;
            last.CopyFromCPU(d.Stream, bits);
        }, "the last pattern's low bit flipped"), "y");
        AssertNames(CaseAsserts.Fails(r => Float16DecompressCase.Of(dev, r, 37, format), (d, x, y, f) => { Float16.Decompress(d, x, y, f); Nudge(d, y); },
            "the last value nudged"), "y");
    });

    [Fact]
    public void Loss_case_fails_a_wrong_correct_count() => TestDevice.Use(dev =>
    {
        LossForwardLauncher right = LossForwardCase.Default;
        AssertNames(CaseAsserts.Fails(r => new LossForwardCase(dev, r, 6, 10), (d, logits, labels, probs, loss, correct, n, k) =>
        {
            right(d, logits, labels, probs, loss, correct, n, k);
            correct.CopyFromCPU(d.Stream, new[] { d.Download(correct)[0] + 1 });
        }, "correct count off by one"), "correct");
    });

    [Fact]
    public void Max_pool_case_fails_a_wrong_argmax() => TestDevice.Use(dev =>
    {
        MaxPoolForwardLauncher right = MaxPoolForwardCase.Default;
        AssertNames(CaseAsserts.Fails(r => new MaxPoolForwardCase(dev, r, new Pool2dShape(1, 2, 5, 5, 3, 2, 1)),
            (Device d, ArrayView<float> x, ArrayView<float> y, ArrayView<int> arg, in Pool2dShape s) =>
            {
                right(d, x, y, arg, s);
                arg.SubView(0, 1).CopyFromCPU(d.Stream, new[] { d.Download(arg.SubView(0, 1))[0] + 1 });
            }, "argmax off by one element"), "argmax");
    });

    [Fact]
    public void Sgd_first_step_case_fails_a_kernel_that_reads_the_buffer() => TestDevice.Use(dev =>
    {
        SgdLauncher right = SgdCase.Default;
        CheckResult r = CaseAsserts.Fails(rng => new SgdCase(dev, rng, 37, firstStep: true),
            (d, p, g, buf, lr, m, wd, first) => right(d, p, g, buf, lr, m, wd, firstStep: false), "a steady-state step on the poisoned buffer");
        Assert.True(double.IsPositiveInfinity(r.Worst), r.ToString());
    });

    [Fact]
    public void Relu_and_augment_cases_fail_kernels_that_skip_their_work() => TestDevice.Use(dev =>
    {
        CaseAsserts.Fails(r => UnaryCase.ReluForward(dev, r, 64), (d, x, y) => x.CopyTo(d.Stream, y), "x copied, negatives kept");
        AugmentLauncher right = AugmentCase.Default;
        CaseAsserts.Fails(r => new AugmentCase(dev, r, new AugmentShape(2, 3, 5, 6, 2)), (d, images, crops, flips, output, mean, std, n, c, h, w, pad) =>
        {
            using var noFlips = d.Allocate<int>(n);
            noFlips.View.CopyFromCPU(d.Stream, new int[n]);
            right(d, images, crops, noFlips.View, output, mean, std, n, c, h, w, pad);
            d.Synchronize();
        }, "flips ignored");
    });
}
