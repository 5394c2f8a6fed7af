using System.Collections;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Engine.Comm.Nccl;

namespace Engine.Comm.Tests;

/// <summary>What can be checked of the NCCL binding without a GPU: the ABI against nccl.h, and the library search.</summary>
public class NcclBindingTests
{
    [Fact]
    public void UniqueIdIs128BytesPassedByValue()
    {
        Assert.Equal(128, Unsafe.SizeOf<NcclUniqueId>());
        Assert.Equal(128, Marshal.SizeOf<NcclUniqueId>());
        var bytes = Enumerable.Range(0, 128).Select(i => (byte)(i * 7)).ToArray();
        Assert.Equal(bytes, NcclUniqueId.FromBytes(bytes).ToArray());
        Assert.Throws<ArgumentException>(() => NcclUniqueId.FromBytes(new byte[127]));
    }

    [Fact]
    public void EnumsMatchNcclH()
    {
        // ncclResult_t
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 7, 8], new[] { NcclResult.Success, NcclResult.UnhandledCudaError, NcclResult.SystemError, NcclResult.InternalError,
            NcclResult.InvalidArgument, NcclResult.InvalidUsage, NcclResult.RemoteError, NcclResult.InProgress, NcclResult.Timeout }.Select(v => (int)v));
        // ncclRedOp_t
        Assert.Equal([0, 1, 2, 3, 4], new[] { NcclRedOp.Sum, NcclRedOp.Prod, NcclRedOp.Max, NcclRedOp.Min, NcclRedOp.Avg }.Select(v => (int)v));
        // ncclDataType_t
        Assert.Equal(7, (int)NcclDataType.Float32);
        Assert.Equal(8, (int)NcclDataType.Float64);
        Assert.Equal(6, (int)NcclDataType.Float16);
        Assert.Equal(9, (int)NcclDataType.Bfloat16);
        // Every enum is a C int.
        Assert.Equal(4, Unsafe.SizeOf<NcclResult>());
        Assert.Equal(4, Unsafe.SizeOf<NcclRedOp>());
        Assert.Equal(4, Unsafe.SizeOf<NcclDataType>());
    }

    /// <summary>ncclConfig_t's leading fields as nccl.h lays them out on 64-bit Linux, and NCCL_CONFIG_INITIALIZER's values with blocking = 0.</summary>
    [Fact]
    public void ConfigMatchesNcclH()
    {
        Assert.Equal(40, Marshal.SizeOf<NcclConfig>());
        Assert.Equal([0, 8, 12, 16, 20, 24, 28, 32], new[]
        {
            nameof(NcclConfig.Size), nameof(NcclConfig.Magic), nameof(NcclConfig.Version), nameof(NcclConfig.Blocking),
            nameof(NcclConfig.CgaClusterSize), nameof(NcclConfig.MinCtas), nameof(NcclConfig.MaxCtas), nameof(NcclConfig.NetName),
        }.Select(f => (int)Marshal.OffsetOf<NcclConfig>(f)));
        NcclConfig c = NcclConfig.NonBlocking();
        Assert.Equal((40u, 0xcafebeefu, 0), ((uint)c.Size, c.Magic, c.Blocking));
        Assert.Equal(21400u, c.Version); // NCCL_VERSION(2, 14, 0): the first release with this struct
        Assert.Equal(int.MinValue, c.CgaClusterSize); // NCCL_CONFIG_UNDEF_INT
        Assert.Equal(0, c.NetName);
    }

    [Fact]
    public void SearchOrderIsExplicitPathThenLdLibraryPathThenLoaderThenUsualFoldersThenPythonWheels()
    {
        var env = new Hashtable { ["ENGINE_NCCL_PATH"] = "/opt/custom/libnccl.so.2", ["LD_LIBRARY_PATH"] = "/a/lib:/b/lib", ["VIRTUAL_ENV"] = "/nonexistent/venv" };
        IReadOnlyList<string> c = NcclLibrary.Candidates(env);
        Assert.Equal("/opt/custom/libnccl.so.2", c[0]);
        Assert.Equal("/a/lib/libnccl.so.2", c[1]);
        Assert.Equal("/b/lib/libnccl.so.2", c[2]);
        Assert.Equal("libnccl.so.2", c[3]);
        Assert.Contains("/usr/local/cuda/lib64/libnccl.so.2", c);
        Assert.True(c.ToList().IndexOf("/usr/lib/x86_64-linux-gnu/libnccl.so.2") > 3);
    }

    [Fact]
    public void AnExplicitFolderMeansTheLibraryInsideIt()
    {
        string dir = Path.GetTempPath();
        var c = NcclLibrary.Candidates(new Hashtable { ["ENGINE_NCCL_PATH"] = dir });
        Assert.Equal(Path.Combine(dir, "libnccl.so.2"), c[0]);
    }

    [Fact]
    public void MissingLibraryErrorListsWhereItLooked()
    {
        if (NcclLibrary.TryLoad(out string? error))
        {
            // A host with NCCL installed: the binding must then work at least as far as the version.
            Assert.True(NcclLibrary.Version() >= 21000, $"NCCL {NcclLibrary.Version()} loaded from {NcclLibrary.LoadedFrom}");
            return;
        }
        Assert.NotNull(error);
        Assert.Contains("libnccl.so.2", error);
        Assert.Contains("/usr/local/cuda/lib64/libnccl.so.2 (no such file)", error);
        Assert.Contains("ENGINE_NCCL_PATH", error);
        var e = Assert.Throws<DllNotFoundException>(NcclLibrary.Load);
        Assert.Equal(error, e.Message);
    }

    [Fact]
    public void NcclOnTheCpuDeviceIsRefusedClearly()
    {
        var e = Assert.Throws<ArgumentException>(() => NcclCommunicator.Create(Engine.Tests.TestDevice.Cpu, null, 0, 1, TimeSpan.FromSeconds(1)));
        Assert.Contains("--backend host", e.Message);
    }

    /// <summary>A candidate the loader refuses keeps the loader's reason (the line .NET puts after its generic sentence).</summary>
    [Fact]
    public void A_refused_library_keeps_the_loaders_reason()
    {
        string dir = Directory.CreateTempSubdirectory("not-nccl-").FullName;
        try
        {
            string file = Path.Combine(dir, NcclLibrary.FileName);
            File.WriteAllBytes(file, new byte[4096]); // long enough to be read, not an ELF file
            var e = Assert.ThrowsAny<Exception>(() => System.Runtime.InteropServices.NativeLibrary.Load(file));
            string reason = NcclLibrary.LoaderReason(e.Message);
            Assert.Contains("ELF", reason, StringComparison.Ordinal);
            Assert.DoesNotContain("\n", reason, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
