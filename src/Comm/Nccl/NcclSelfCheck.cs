using System.Diagnostics;
using ILGPU.Runtime;
using Device = Engine.Kernels.Device;

namespace Engine.Comm.Nccl;

/// <summary>
/// The GPU check of the NCCL binding: a one-rank NCCL communicator on ILGPU buffers and ILGPU's
/// stream, with out-of-place all-reduces into a NaN-poisoned buffer, so that a result proves NCCL
/// read and wrote memory ILGPU allocated. It prints which CUDA context was current before and after
/// NCCL's init and which the stream and buffers belong to (all must be the device's primary context):
/// one rank never launches NCCL's ring kernels, so a context mismatch may not fail it, only show.
/// <c>engine bench allreduce --backend nccl --nproc 1</c> runs it first.
/// </summary>
public static class NcclSelfCheck
{
    /// <summary>Returns true when every check passed; writes what it did to <paramref name="log"/>.</summary>
    public static bool Run(Device dev, TextWriter log, TimeSpan timeout, long elements = 1 << 20)
    {
        log.WriteLine($"nccl self-check on {dev}: NCCL {NcclLibrary.Version()} from {NcclLibrary.LoadedFrom}");
        using var comm = NcclCommunicator.Create(dev, null, 0, 1, timeout);
        CudaContextFacts contexts = comm.ContextFacts();
        log.WriteLine($"  contexts: {contexts}");
        var host = new float[elements];
        var rng = new Random(1234);
        for (long i = 0; i < elements; i++)
        {
            host[i] = (float)(rng.NextDouble() * 2 - 1);
        }
        using var input = dev.Upload<float>(host);
        using var output = dev.Allocate<float>(elements);
        bool ok = true;
        foreach (ReduceOp op in new[] { ReduceOp.Sum, ReduceOp.Avg })
        {
            Engine.Kernels.Elementwise.Fill(dev, output.View, float.NaN);
            comm.AllReduce(input.View, output.View, op).Wait();
            float[] got = dev.Download<float>(output.View);
            long bad = 0;
            for (long i = 0; i < elements; i++)
            {
                if (got[i] != host[i]) bad++;
            }
            log.WriteLine($"  all_reduce {op} out of place, {elements} floats: {(bad == 0 ? "ok" : $"{bad} wrong elements")}");
            ok &= bad == 0;
        }
        var clock = Stopwatch.StartNew();
        const int iters = 20;
        var works = Enumerable.Range(0, iters).Select(_ => comm.AllReduce(input.View, ReduceOp.Sum)).ToList();
        CommWork.WaitAll(works);
        log.WriteLine($"  {iters} in-place all_reduce: {clock.Elapsed.TotalMilliseconds / iters:F3} ms each (one rank: NCCL's local copy and launch cost)");
        ok &= contexts.AllPrimary;
        log.WriteLine(ok ? "nccl self-check: PASS" : "nccl self-check: FAIL");
        return ok;
    }
}
