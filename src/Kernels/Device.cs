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
    /// <summary>
    /// The CPU accelerator's shape: warps of 2 threads (ILGPU's minimum), 1 warp per group, 2
    /// multiprocessors (one per core of the 2-core machines the tests run on). ILGPU runs one OS thread
    /// per simulated thread, each multiprocessor walks its half of the grid one group at a time, and
    /// every group end and barrier is a System.Threading.Barrier handshake among the group's OS threads.
    /// So the GEMM kernels run one-thread groups (<see cref="KernelTuning.Cpu"/>) and the element-wise
    /// kernels one grid-stride group per multiprocessor. Measured on 2 busy cores (load 8-18), width-4
    /// ResNet-18, batch 16, one training step: 16 s with 16-thread groups on 1 multiprocessor
    /// (Tile 4 / Work 4, one thread per element); 0.11-0.22 s now; 2 x 1 x 1 and 2 x 2 x 2 shapes with
    /// one-thread groups measured the same within noise (0.13-0.18 s); 4-thread groups (Tile 2 /
    /// Work 4) 0.5-0.6 s; slice depths 16, 32, 64 within noise.
    /// </summary>
    public const int CpuWarpSize = 2;
    private const int CpuWarpsPerGroup = 1;
    private const int CpuMultiprocessors = 2;

    private readonly ConcurrentDictionary<string, object> _kernels = new();
    private readonly bool _ownsContext;

    /// <summary>The CUdevice whose primary context this accelerator lives in, or null (CPU, or ENGINE_CUDA_CONTEXT=own).</summary>
    private int? _primaryContextDevice;

    public Context Context { get; }
    public Accelerator Accelerator { get; }
    public AcceleratorStream Stream { get; }

    /// <summary>The text the device was asked for by (<c>cpu</c>, <c>cuda:1</c>).</summary>
    public string Spec { get; }
    public bool IsCuda => Accelerator.AcceleratorType == AcceleratorType.Cuda;
    public bool IsCpu => Accelerator.AcceleratorType == AcceleratorType.CPU;

    /// <summary>
    /// True on a GPU simulated by GPGPU-Sim (../shared/gpusim puts it behind libcuda.so.1): the real CUDA path,
    /// except for the instructions the simulator cannot parse (Ampere's tensor-core mma.sync and TF32 rounding).
    /// </summary>
    public bool IsSimulated => IsCuda && Name.Contains("GPGPU-Sim", StringComparison.Ordinal);
    public string Name => Accelerator.Name;

    /// <summary>Tile sizes for the GEMM-shaped kernels, chosen per accelerator (small on the CPU emulator).</summary>
    public KernelTuning Tuning { get; }

    private Device(Context context, Accelerator accelerator, string spec, bool ownsContext, KernelTuning? tuning = null)
    {
        Context = context;
        Accelerator = accelerator;
        Stream = accelerator.DefaultStream;
        Spec = spec;
        _ownsContext = ownsContext;
        Tuning = tuning ?? (IsCpu ? KernelTuning.Cpu : KernelTuning.Gpu);
    }

    /// <summary>A context able to create every accelerator the engine uses, with profiling markers on.</summary>
    public static Context CreateContext()
    {
        CudaDriverResolver.Install();
        return Context.Create(builder => builder
            .CPU(new CPUDevice(CpuWarpSize, CpuWarpsPerGroup, CpuMultiprocessors))
            .Cuda()
            .Profiling()
            .Optimize(OptimizationLevel.O1)
            .EnableAlgorithms());
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
                "cpu" => new Device(context, context.CreateCPUAccelerator(0), "cpu", owns),
                "auto" => CudaCount(context) > 0
                    ? CreateCuda(context, 0, owns, "cuda:0")
                    : new Device(context, context.CreateCPUAccelerator(0), "cpu", owns),
                "cuda" => CreateCuda(context, 0, owns, "cuda:0"),
                _ when s.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(s.AsSpan(5), out int i) && i >= 0
                    => CreateCuda(context, i, owns, $"cuda:{i}"),
                _ => throw new ArgumentException(
                    $"Unknown device '{spec}': expected auto, cpu, cuda or cuda:N."),
            };
        }
        catch when (owns)
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A CPU device of another shape and tuning, in its own context: tests use wider groups and tiles to
    /// run the CUDA-style thread mappings and shared-memory reductions of the kernels on the emulator.
    /// </summary>
    internal static Device CreateCpu(int threadsPerWarp, int warpsPerGroup, int multiprocessors, KernelTuning tuning)
    {
        var context = Context.Create(builder => builder
            .CPU(new CPUDevice(threadsPerWarp, warpsPerGroup, multiprocessors))
            .Optimize(OptimizationLevel.O1)
            .EnableAlgorithms());
        try
        {
            return new Device(context, context.CreateCPUAccelerator(0), "cpu", ownsContext: true, tuning);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>A CUDA device in its own context, as ILGPU makes it, instead of the primary one (tests show the difference).</summary>
    internal static Device CreateCudaInOwnContext(int index) => CreateCuda(CreateContext(), index, owns: true, $"cuda:{index}", primaryContext: false);

    private static Device CreateCuda(Context context, int index, bool owns, string spec, bool? primaryContext = null)
    {
        int n = CudaCount(context);
        if (index >= n)
        {
            throw new ArgumentException(n == 0
                ? $"Device 'cuda:{index}' was asked for, but ILGPU sees no CUDA device (driver libcuda.so.1 missing or no GPU). Use --device cpu."
                : $"Device 'cuda:{index}' was asked for, but only {n} CUDA device(s) exist (cuda:0..cuda:{n - 1}).");
        }
        var accelerator = context.CreateCudaAccelerator(index);
        int? primary = null;
        try
        {
            // One context for the engine, the CUDA runtime and NCCL: the device's primary context.
            if (primaryContext ?? CudaPrimaryContext.Enabled) primary = CudaPrimaryContext.Adopt(accelerator);
        }
        catch
        {
            accelerator.Dispose();
            throw;
        }
        return new Device(context, accelerator, spec, owns) { _primaryContextDevice = primary };
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

    /// <summary>Every buffer this device has allocated, by use: live bytes and the peak.</summary>
    public DeviceMemory Memory { get; } = new();

    /// <summary>A new dense device buffer of <paramref name="length"/> elements (contents undefined), counted under <paramref name="use"/>.</summary>
    public MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length, MemoryUse use = MemoryUse.Activations) where T : unmanaged
    {
        var buffer = Accelerator.Allocate1D<T>(length);
        Memory.Add(buffer, use);
        return buffer;
    }

    /// <summary>Copies host data into a new device buffer.</summary>
    public MemoryBuffer1D<T, Stride1D.Dense> Upload<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        var buffer = Allocate<T>(data.Length);
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

    /// <summary>When set, every launcher's time is recorded here (<c>--profile kernels</c>).</summary>
    public KernelProfiler? Profiler { get; set; }

    /// <summary>Times the launch that follows, until the scope is disposed, when profiling; a no-op otherwise.</summary>
    public KernelProfiler.Scope Profile(string name, Cost cost) => Profiler?.Measure(this, name, cost) ?? default;

    public override string ToString() => $"{Spec} ({Name})";

    public void Dispose()
    {
        if (_primaryContextDevice is int device)
        {
            CudaPrimaryContext.Dispose((CudaAccelerator)Accelerator, device);
        }
        else
        {
            Accelerator.Dispose();
        }
        if (_ownsContext)
        {
            Context.Dispose();
        }
    }

    /// <summary>
    /// ILGPU loads the driver as "cuda" (libcuda.so); many GPU hosts only ship libcuda.so.1.
    /// A resolver on ILGPU's assembly maps the name without touching the host.
    /// </summary>
    internal static class CudaDriverResolver
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

        /// <summary>
        /// The driver's real name first: a toolkit's stub libcuda.so (lib64/stubs, on LD_LIBRARY_PATH in build
        /// environments) would otherwise win and fail every call.
        /// </summary>
        internal static readonly string[] DriverCandidates = ["libcuda.so.1", "libcuda.so"];

        private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path)
        {
            if (name is "cuda" or "nvcuda" && OperatingSystem.IsLinux())
            {
                foreach (string candidate in DriverCandidates)
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
