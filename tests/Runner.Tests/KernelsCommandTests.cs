using System.Text.Json;
using Engine.Kernels.Assembler;
using Engine.Tests;

namespace Engine.Runner.Tests;

/// <summary>`engine kernels`: NVIDIA's assembler over every kernel, as a user runs it on a machine without a GPU.</summary>
[Collection("console")]
public class KernelsCommandTests
{
    [CudaToolsFact]
    public void Prints_every_kernel_for_every_architecture_and_passes()
    {
        var (code, output, err) = Cli.Run("kernels");
        Assert.True(code == 0, output + err);
        int pairs = KernelCatalog.Kernels.Count * KernelAudit.Architectures.Count;
        Assert.Contains($"{pairs} passed, 0 failed", output, StringComparison.Ordinal);
        foreach (string arch in KernelAudit.Architectures.Keys) Assert.Contains($"\n{arch} (", output, StringComparison.Ordinal);
        Assert.Contains("ptxas", output, StringComparison.Ordinal);
    }

    [CudaToolsFact]
    public void Json_rows_carry_resources_occupancy_and_the_main_loop()
    {
        var (code, output, err) = Cli.Run("kernels", "--arch", "sm_90", "--kernel", "conv2d_fwd,relu_fwd", "--json", "-");
        Assert.True(code == 0, output + err);
        using var doc = JsonDocument.Parse(output);
        var rows = doc.RootElement.GetProperty("kernels").EnumerateArray().ToArray();
        Assert.Equal(["conv2d_fwd", "relu_fwd"], rows.Select(r => r.GetProperty("kernel").GetString()));
        var conv = rows[0];
        Assert.Equal("sm_90", conv.GetProperty("architecture").GetString());
        Assert.True(conv.GetProperty("registers").GetInt32() > 0);
        Assert.True(conv.GetProperty("static_shared").GetInt32() > 0, "the conv stages tiles in shared memory");
        Assert.False(conv.GetProperty("group_from_occupancy_api").GetBoolean());
        double fraction = conv.GetProperty("occupancy").GetProperty("fraction").GetDouble();
        Assert.InRange(fraction, 1.0 / 64, 1.0);
        Assert.True(conv.GetProperty("main_loop").GetProperty("ffma").GetInt32() > 0);
        Assert.True(rows[1].GetProperty("group_from_occupancy_api").GetBoolean(), "relu is auto-grouped");
    }

    [CudaToolsFact]
    public void Sass_prints_the_main_loop_the_counts_come_from()
    {
        var (code, output, err) = Cli.Run("kernels", "--arch", "sm_90", "--kernel", "relu_fwd_v4", "--sass");
        Assert.True(code == 0, output + err);
        Assert.Contains("relu_fwd_v4 on sm_90: main loop", output, StringComparison.Ordinal);
        var listing = output[output.IndexOf("relu_fwd_v4 on sm_90: main loop", StringComparison.Ordinal)..];
        Assert.Matches(@"LD(G)?\.E\.128", listing);
        Assert.Contains("BRA", listing, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_architecture_or_kernel_is_one_clear_error()
    {
        var (code, _, err) = Cli.Run("kernels", "--arch", "sm_75");
        Assert.Equal(2, code);
        Assert.Contains("Unknown architecture 'sm_75'", err, StringComparison.Ordinal);
        (code, _, err) = Cli.Run("kernels", "--kernel", "conv3d");
        Assert.Equal(2, code);
        Assert.Contains("No kernel is named 'conv3d'", err, StringComparison.Ordinal);
    }

    [Fact]
    public void Without_the_tools_it_says_how_to_get_them()
    {
        string empty = Directory.CreateTempSubdirectory("no-cuda-tools-").FullName;
        var saved = new[] { "ENGINE_CUDA_TOOLS", "CUDA_HOME", "CUDA_PATH", "PATH", "CUDA_TOOLS_DIR" }.ToDictionary(v => v, Environment.GetEnvironmentVariable);
        try
        {
            foreach (string v in saved.Keys) Environment.SetEnvironmentVariable(v, null);
            Environment.SetEnvironmentVariable("CUDA_TOOLS_DIR", empty);
            Assert.Null(CudaTools.Find());
            var (code, _, err) = Cli.Run("kernels", "--arch", "sm_90");
            Assert.Equal(2, code);
            Assert.Contains("ptxas and nvdisasm were not found", err, StringComparison.Ordinal);
            Assert.Contains("tools/cuda-tools.sh", err, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var (v, value) in saved) Environment.SetEnvironmentVariable(v, value);
            Directory.Delete(empty);
        }
    }
}

/// <summary>The bench's FMA ceiling kernel, judged by the assembler like the engine's kernels.</summary>
public class BenchFmaAssemblyTests
{
    /// <summary>ILGPU writes mul.f32 + add.f32; the ceiling is only an FMA ceiling if ptxas fuses them: FFMA only, no FMUL or FADD.</summary>
    [CudaToolsFact]
    public void Bench_fma_main_loop_is_fused_multiply_adds_only()
    {
        var kernel = KernelCatalog.Discover(typeof(Program).Assembly).Single(k => k.Name == "bench_fma");
        using var audit = new KernelAudit(CudaTools.Require());
        var row = audit.Audit(kernel, "sm_90");
        Assert.True(row.Passed, string.Join("; ", row.Faults));
        var loop = row.MainLoop;
        Assert.NotNull(loop);
        Assert.True(loop.Ffma >= 32 && loop.Fmul == 0 && loop.Fadd == 0, $"bench_fma loop: {loop.Ffma} FFMA, {loop.Fmul} FMUL, {loop.Fadd} FADD");
    }
}
