using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Engine.Comm.Nccl;

/// <summary>ncclResult_t (nccl.h).</summary>
public enum NcclResult : int
{
    Success = 0,
    UnhandledCudaError = 1,
    SystemError = 2,
    InternalError = 3,
    InvalidArgument = 4,
    InvalidUsage = 5,
    RemoteError = 6,
    InProgress = 7,
    Timeout = 8,
}

/// <summary>ncclDataType_t (nccl.h); the engine moves float32, and fp16 / bf16 for compressed gradients.</summary>
public enum NcclDataType : int
{
    Int8 = 0,
    Uint8 = 1,
    Int32 = 2,
    Uint32 = 3,
    Int64 = 4,
    Uint64 = 5,
    Float16 = 6,
    Float32 = 7,
    Float64 = 8,
    Bfloat16 = 9,
}

/// <summary>ncclRedOp_t (nccl.h). Avg needs NCCL 2.10 or later.</summary>
public enum NcclRedOp : int
{
    Sum = 0,
    Prod = 1,
    Max = 2,
    Min = 3,
    Avg = 4,
}

/// <summary>ncclUniqueId: 128 opaque bytes (NCCL_UNIQUE_ID_BYTES), passed by value to ncclCommInitRank.</summary>
[InlineArray(Bytes)]
public struct NcclUniqueId
{
    public const int Bytes = 128;
    private byte _element0;

    public static NcclUniqueId FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Bytes)
        {
            throw new ArgumentException($"an ncclUniqueId is {Bytes} bytes, got {bytes.Length}.");
        }
        var id = new NcclUniqueId();
        bytes.CopyTo(id);
        return id;
    }

    public readonly byte[] ToArray() => ((ReadOnlySpan<byte>)this).ToArray();
}

/// <summary>
/// The leading fields of ncclConfig_t (nccl.h), as NCCL 2.14 introduced it; NCCL reads as many fields as
/// <see cref="Size"/> and <see cref="Version"/> say, and keeps its defaults for the rest.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct NcclConfig
{
    /// <summary>NCCL_CONFIG_UNDEF_INT: "use NCCL's default".</summary>
    public const int Undefined = int.MinValue;

    /// <summary>The NCCL version whose config layout this is (2.14.0), and the first with non-blocking communicators.</summary>
    public const int LayoutVersion = 21400;

    public nuint Size;
    public uint Magic;
    public uint Version;
    public int Blocking;
    public int CgaClusterSize;
    public int MinCtas;
    public int MaxCtas;
    public nint NetName;

    /// <summary>NCCL_CONFIG_INITIALIZER with blocking = 0: init and collectives may return ncclInProgress, and
    /// ncclCommGetAsyncError says when they are done; an init that never completes can then be aborted.</summary>
    public static NcclConfig NonBlocking() => new()
    {
        Size = (nuint)Marshal.SizeOf<NcclConfig>(),
        Magic = 0xcafebeef,
        Version = LayoutVersion,
        Blocking = 0,
        CgaClusterSize = Undefined,
        MinCtas = Undefined,
        MaxCtas = Undefined,
        NetName = 0,
    };
}

/// <summary>
/// The NCCL entry points the engine uses (nccl.h), bound with LibraryImport. The library name
/// "nccl" is mapped to a file by <see cref="NcclLibrary"/>'s resolver; call
/// <see cref="NcclLibrary.Load"/> first so a missing library gives a clear error.
/// Pointers are device pointers; streams are CUDA streams (cudaStream_t == CUstream).
/// </summary>
internal static partial class NcclNative
{
    public const string Library = "nccl";

    [LibraryImport(Library)]
    public static partial NcclResult ncclGetVersion(out int version);

    [LibraryImport(Library)]
    public static partial NcclResult ncclGetUniqueId(out NcclUniqueId uniqueId);

    [LibraryImport(Library)]
    public static partial NcclResult ncclCommInitRank(out nint comm, int nranks, NcclUniqueId commId, int rank);

    [LibraryImport(Library)]
    public static partial NcclResult ncclCommInitRankConfig(out nint comm, int nranks, NcclUniqueId commId, int rank, in NcclConfig config);

    [LibraryImport(Library)]
    public static partial NcclResult ncclCommDestroy(nint comm);

    [LibraryImport(Library)]
    public static partial NcclResult ncclCommAbort(nint comm);

    [LibraryImport(Library)]
    public static partial NcclResult ncclCommGetAsyncError(nint comm, out NcclResult asyncError);

    [LibraryImport(Library)]
    public static partial nint ncclGetErrorString(NcclResult result);

    [LibraryImport(Library)]
    public static partial NcclResult ncclGroupStart();

    [LibraryImport(Library)]
    public static partial NcclResult ncclGroupEnd();

    [LibraryImport(Library)]
    public static partial NcclResult ncclAllReduce(nint sendbuff, nint recvbuff, nuint count, NcclDataType datatype, NcclRedOp op, nint comm, nint stream);

    [LibraryImport(Library)]
    public static partial NcclResult ncclBroadcast(nint sendbuff, nint recvbuff, nuint count, NcclDataType datatype, int root, nint comm, nint stream);

    [LibraryImport(Library)]
    public static partial NcclResult ncclReduce(nint sendbuff, nint recvbuff, nuint count, NcclDataType datatype, NcclRedOp op, int root, nint comm, nint stream);

    [LibraryImport(Library)]
    public static partial NcclResult ncclAllGather(nint sendbuff, nint recvbuff, nuint sendcount, NcclDataType datatype, nint comm, nint stream);

    [LibraryImport(Library)]
    public static partial NcclResult ncclReduceScatter(nint sendbuff, nint recvbuff, nuint recvcount, NcclDataType datatype, NcclRedOp op, nint comm, nint stream);

    /// <summary>Throws <see cref="NcclException"/> with NCCL's own message unless <paramref name="result"/> is success.</summary>
    public static void Check(NcclResult result, string call)
    {
        if (result != NcclResult.Success)
        {
            throw new NcclException(call, result, ErrorString(result));
        }
    }

    public static string ErrorString(NcclResult result)
    {
        try
        {
            return Marshal.PtrToStringUTF8(ncclGetErrorString(result)) ?? result.ToString();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return result.ToString();
        }
    }
}

/// <summary>An NCCL call returned an error; the message is NCCL's ncclGetErrorString.</summary>
public sealed class NcclException(string call, NcclResult result, string ncclMessage)
    : CommException(call, null, TimeSpan.Zero, $"{call} failed: {ncclMessage} (ncclResult_t {(int)result}, {result}).")
{
    public NcclResult Result { get; } = result;
}
