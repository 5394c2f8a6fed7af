using Engine.Comm;
using Engine.Kernels;
using Engine.Runner.Training;

namespace Engine.Runner.Tests;

/// <summary>
/// DDP's fp16 and bf16 compression hooks (PyTorch's fp16_compress_hook, bf16_compress_hook): half the bytes of the
/// gradient exchange, parameters within the format's rounding of the float32 run; and the 16-bit all-reduce under them.
/// </summary>
[Collection("cpu-training")]
public class CompressionHookTests
{
    // BN frozen: batch statistics over two samples would amplify the rounding step after step.
    private static TrainOptions Options(string hook)
        => TinyTraining.Options(TrainingMode.Ddp, batch: 2, replicas: 2, steps: 3, seed: 3) with { BucketMb = 0.004, BnMode = "eval", CommHook = hook };

    /// <summary>
    /// fp16 keeps 11 significant bits (a rounding of u = 2^-11), bf16 8 (u = 2^-8): each gradient is rounded before and
    /// after the sum, so the training's movement of the parameters differs from float32's by a few u of itself: the norm
    /// of the difference is within 10u of the norm of float32's update (0.005 and 0.04).
    /// </summary>
    [Theory]
    [InlineData("fp16", 0.005)]
    [InlineData("bf16", 0.04)]
    public void Compressed_ddp_moves_half_the_bytes_and_stays_within_the_formats_rounding(string hook, double rtol)
    {
        RankOutcome[] plain = RankThreads.Run(Options("none"), 2);
        RankOutcome[] compressed = RankThreads.Run(Options(hook), 2);
        float[] expected = plain[0].Parameters, actual = compressed[0].Parameters;
        Assert.True(compressed[1].Parameters.AsSpan().SequenceEqual(actual), $"{hook}: the ranks' parameters differ");
        Assert.False(expected.AsSpan().SequenceEqual(actual), $"{hook}: the parameters are float32's to the bit: nothing was rounded");
        float[] initial;
        using (var fresh = new SingleTrainer(Options("none") with { Mode = TrainingMode.Single }, TextWriter.Null, TextWriter.Null)) initial = fresh.Model.Store.DownloadValues(fresh.Model.Device);
        double Norm(Func<int, double> d) => Math.Sqrt(Enumerable.Range(0, expected.Length).Sum(i => d(i) * d(i)));
        double update = Norm(i => expected[i] - initial[i]), error = Norm(i => actual[i] - expected[i]);
        Assert.True(update > 0, "float32 training did not move the parameters");
        Assert.True(error <= rtol * update, $"{hook}: |compressed - float32| = {error:E3} against float32's update |{update:E3}|: relative {error / update:E3}, bound {rtol}");
        long full = plain[0].Result.Breakdown!.Phases["grad_sync"].BytesPerStep, half = compressed[0].Result.Breakdown!.Phases["grad_sync"].BytesPerStep;
        Assert.Equal(full / 2, half);
        Assert.True(compressed[0].Result.Memory![0].Communication > 0, "the 16-bit bucket buffers are communication memory");
    }

    /// <summary>Three ranks of the host ring sum 16-bit floats: every rank the same bits, each within two roundings of the exact sum.</summary>
    [Theory]
    [InlineData(Float16Format.Fp16, 1e-3)]
    [InlineData(Float16Format.Bf16, 8e-3)]
    public void Host_ring_sums_16_bit_floats(Float16Format format, double rtol)
    {
        const int ranks = 3, n = 2 * 1001;
        var rng = new Random(11);
        float[][] inputs = Enumerable.Range(0, ranks).Select(_ => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 4 - 1)).ToArray()).ToArray();
        ushort[][] encoded = inputs.Select(v => v.Select(x => Float16.Encode(x, format)).ToArray()).ToArray();
        ushort[][] results = Sum16(encoded, format);
        for (int r = 1; r < ranks; r++) Assert.True(results[r].AsSpan().SequenceEqual(results[0]), $"rank {r}'s sum differs from rank 0's");
        for (int i = 0; i < n; i++)
        {
            double exact = encoded.Sum(e => (double)Float16.Decode(e[i], format)), got = Float16.Decode(results[0][i], format);
            double scale = encoded.Sum(e => Math.Abs((double)Float16.Decode(e[i], format)));
            Assert.True(Math.Abs(got - exact) <= rtol * scale + 1e-7, $"{format} [{i}]: {got:R}, exact {exact:R}");
        }
    }

    /// <summary>Each rank (a thread of this process over loopback) all-reduces its values; every rank's result.</summary>
    private static ushort[][] Sum16(ushort[][] encoded, Float16Format format)
    {
        int ranks = encoded.Length;
        var results = new ushort[ranks][];
        int port = Launcher.FreePort();
        var threads = Enumerable.Range(0, ranks).Select(rank => Task.Factory.StartNew(() =>
        {
            var env = LaunchEnvironment.FromVariables(LaunchEnvironment.ForChild(rank, ranks, rank, ranks, "127.0.0.1", port));
            using var device = Device.Create("cpu");
            using var comm = CommunicatorFactory.FromEnvironment(device, "host", TimeSpan.FromSeconds(60), env);
            using var buffer = device.Upload<ushort>(encoded[rank]);
            comm.AllReduce16(buffer.View, format).Wait();
            results[rank] = device.Download<ushort>(buffer.View);
        }, TaskCreationOptions.LongRunning)).ToArray();
        if (!Task.WaitAll(threads, TimeSpan.FromMinutes(2))) throw new TimeoutException("the ranks did not finish");
        return results;
    }
}
