using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels;

/// <summary>
/// One ILGPU accelerator and the stream the engine issues work on.
/// <c>cpu</c> is ILGPU's GPU emulator (one OS thread per simulated GPU thread): correct, slow,
/// and the accelerator every kernel is tested on. <c>cuda</c>, <c>cuda:N</c> are NVIDIA GPUs;
/// <c>auto</c> picks CUDA when ILGPU sees one, else the CPU.
/// </summary>
public sealed class Device : IDisposable
{
    /// <summary>Threads per simulated warp on the CPU accelerator (also the largest CPU group edge).</summary>
    public const int CpuWarpSize = 4;
    private const int CpuWarpsPerGroup = 4;

    private readonly ConcurrentDictionary<string, object> _kernels = new();
    private readonly bool _ownsContext;

    public Context Context { get; }
    public Accelerator Accelerator { get; }
    public AcceleratorStream Stream { get; }

    /// <summary>The text the device was asked for by (<c>cpu</c>, <c>cuda:1</c>).</summary>
    public string Spec { get; }
    public bool IsCuda => Accelerator.AcceleratorType == AcceleratorType.Cuda;
    public bool IsCpu => Accelerator.AcceleratorType == AcceleratorType.CPU;
    public string Name => Accelerator.Name;

    /// <summary>Tile sizes for the GEMM-shaped kernels, chosen per accelerator (small on the CPU emulator).</summary>
    public KernelTuning Tuning { get; }

    private Device(Context context, Accelerator accelerator, string spec, bool ownsContext)
    {
        Context = context;
        Accelerator = accelerator;
        Stream = accelerator.DefaultStream;
        Spec = spec;
        _ownsContext = ownsContext;
        Tuning = IsCpu ? (Environment.GetEnvironmentVariable("EXP_TILE") is string t ? new KernelTuning(int.Parse(t.Split(',')[0]), int.Parse(t.Split(',')[1]), int.Parse(t.Split(',')[2])) : KernelTuning.Cpu) : KernelTuning.Gpu;
    }

    /// <summary>A context able to create every accelerator the engine uses, with profiling markers on.</summary>
    public static Context CreateContext()
    {
        CudaDriverResolver.Install();
        return Context.Create(builder => builder
            .CPU(ExperimentCpu())
            .Cuda()
            .Profiling()
            .Optimize(OptimizationLevel.O1)
            .EnableAlgorithms());
    }

    private static CPUAcceleratorMode CpuMode() => Environment.GetEnvironmentVariable("EXP_MODE") switch
    {
        "seq" => CPUAcceleratorMode.Sequential,
        "par" => CPUAcceleratorMode.Parallel,
        _ => CPUAcceleratorMode.Auto,
    };

    private static CPUDevice ExperimentCpu()
    {
        string? e = Environment.GetEnvironmentVariable("EXP_CPU");
        if (e is null) return new CPUDevice(2, 1, 2);
        var p = e.Split(',').Select(int.Parse).ToArray();
        return new CPUDevice(p[0], p[1], p[2]);
    }

    /// <summary>Creates the device <paramref name="spec"/> names, in <paramref name="context"/> if given.</summary>
    /// <exception cref="ArgumentException">The spec is not one of auto, cpu, cuda, cuda:N, or names a missing GPU.</exception>
    public static Device Create(string spec, Context? context = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string s = spec.Trim().ToLowerInvariant();
        bool owns = context is null;
        context ??= CreateContext();
        try
        {
            return s switch
            {
                "cpu" => new Device(context, context.CreateCPUAccelerator(0, CpuMode()), "cpu", owns),
                "auto" => CudaCount(context) > 0
                    ? new Device(context, context.CreateCudaAccelerator(0), "cuda:0", owns)
                    : new Device(context, context.CreateCPUAccelerator(0, CpuMode()), "cpu", owns),
                "cuda" => CreateCuda(context, 0, owns),
                _ when s.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(s.AsSpan(5), out int i) && i >= 0
                    => CreateCuda(context, i, owns),
                _ => throw new ArgumentException(
                    $"Unknown device '{spec}': expected auto, cpu, cuda or cuda:N.", nameof(spec)),
            };
        }
        catch when (owns)
        {
            context.Dispose();
            throw;
        }
    }

    private static Device CreateCuda(Context context, int index, bool owns)
    {
        int n = CudaCount(context);
        if (index >= n)
        {
            throw new ArgumentException(n == 0
                ? $"Device 'cuda:{index}' was asked for, but ILGPU sees no CUDA device (driver libcuda.so.1 missing or no GPU). Use --device cpu."
                : $"Device 'cuda:{index}' was asked for, but only {n} CUDA device(s) exist (cuda:0..cuda:{n - 1}).");
        }
        return new Device(context, context.CreateCudaAccelerator(index), $"cuda:{index}", owns);
    }

    /// <summary>How many CUDA devices ILGPU sees in <paramref name="context"/>.</summary>
    public static int CudaCount(Context context) => context.GetCudaDevices().Count;

    /// <summary>
    /// Threads to launch for a grid-stride loop over <paramref name="n"/> elements: at most as many
    /// threads as the device runs at once (multiprocessors x resident threads each: one group per
    /// multiprocessor on the CPU emulator, where every extra group costs an OS-thread handshake;
    /// full occupancy on a GPU), each looping <c>for (j = i; j &lt; n; j += threads)</c>.
    /// </summary>
    public int GridStrideThreads(long n) => (int)Math.Max(1, Math.Min(n, (long)Accelerator.MaxNumThreads));

    /// <summary>Loads a kernel once per device and caches it under <paramref name="key"/>.</summary>
    public T Kernel<T>(string key, Func<Accelerator, T> load) where T : Delegate
        => (T)_kernels.GetOrAdd(key, _ => load(Accelerator));

    /// <summary>A new dense device buffer of <paramref name="length"/> elements (contents undefined).</summary>
    public MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length) where T : unmanaged
        => Accelerator.Allocate1D<T>(length);

    /// <summary>Copies host data into a new device buffer.</summary>
    public MemoryBuffer1D<T, Stride1D.Dense> Upload<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        var buffer = Accelerator.Allocate1D<T>(data.Length);
        if (data.Length > 0)
        {
            buffer.View.CopyFromCPU(Stream, data);
        }
        return buffer;
    }

    /// <summary>Copies a device view back to a new host array (synchronises the stream).</summary>
    public T[] Download<T>(ArrayView<T> view) where T : unmanaged
    {
        var host = new T[view.Length];
        if (view.Length > 0)
        {
            view.CopyToCPU(Stream, host);
        }
        Stream.Synchronize();
        return host;
    }

    public void Synchronize() => Stream.Synchronize();

    public override string ToString() => $"{Spec} ({Name})";

    public void Dispose()
    {
        Accelerator.Dispose();
        if (_ownsContext)
        {
            Context.Dispose();
        }
    }

    /// <summary>
    /// ILGPU loads the driver as "cuda" (libcuda.so); many GPU hosts only ship libcuda.so.1.
    /// A resolver on ILGPU's assembly maps the name without touching the host.
    /// </summary>
    private static class CudaDriverResolver
    {
        private static int _installed;

        public static void Install()
        {
            if (Interlocked.Exchange(ref _installed, 1) != 0)
            {
                return;
            }
            try
            {
                NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, Resolve);
            }
            catch (InvalidOperationException)
            {
                // Someone else already set a resolver on ILGPU's assembly; keep theirs.
            }
        }

        private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
        {
            if (name is "cuda" or "nvcuda" && OperatingSystem.IsLinux())
            {
                foreach (string candidate in new[] { "libcuda.so", "libcuda.so.1" })
                {
                    if (NativeLibrary.TryLoad(candidate, out IntPtr handle))
                    {
                        return handle;
                    }
                }
            }
            return IntPtr.Zero;
        }
    }
}
