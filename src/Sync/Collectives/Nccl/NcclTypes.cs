namespace ActorTrain.Sync.Collectives.Nccl;

// Values of nccl.h (NCCL 2.x); a C enum is a 32-bit int on every platform NCCL supports.

/// <summary><c>ncclResult_t</c>.</summary>
internal enum NcclResult
{
    Success = 0,
    UnhandledCudaError = 1,
    SystemError = 2,
    InternalError = 3,
    InvalidArgument = 4,
    InvalidUsage = 5,
    RemoteError = 6,
    InProgress = 7,

    /// <summary>Added in NCCL 2.27.</summary>
    Timeout = 8,
}

/// <summary><c>ncclDataType_t</c>: the element types this project reduces.</summary>
internal enum NcclDataType
{
    Float16 = 6,
    Float32 = 7,
    Float64 = 8,
    BFloat16 = 9,
}

/// <summary><c>ncclRedOp_t</c>: the built-in reductions.</summary>
internal enum NcclRedOp
{
    Sum = 0,
    Prod = 1,
    Max = 2,
    Min = 3,
    Avg = 4,
}

/// <summary>The buffers of one NCCL collective: device pointers, the element count its C signature names, and the element type.</summary>
internal readonly record struct NcclBuffers(IntPtr Send, IntPtr Receive, long Count, NcclDataType Type = NcclDataType.Float32);

/// <summary>Where a collective runs: its communicator and the CUDA stream it is enqueued on.</summary>
internal readonly record struct NcclQueue(IntPtr Comm, IntPtr Stream);

/// <summary>Names of NCCL's result codes as nccl.h spells them, for error messages.</summary>
internal static class NcclResults
{
    /// <summary>The nccl.h name of <paramref name="code"/> (<c>ncclInvalidUsage</c>), or <c>ncclResult 42</c> for a code this build does not know.</summary>
    public static string Name(int code) => Enum.IsDefined((NcclResult)code)
        ? "nccl" + (NcclResult)code
        : $"ncclResult {code}";

    /// <summary>
    /// Throws an <see cref="NcclException"/> for any code but <see cref="NcclResult.Success"/>;
    /// <paramref name="describe"/> is <c>ncclGetErrorString</c> (null when it cannot be asked).
    /// </summary>
    public static void ThrowIfFailed(string call, int code, Func<int, string?>? describe)
    {
        if (code != (int)NcclResult.Success)
        {
            throw new NcclException(call, code, describe?.Invoke(code));
        }
    }
}

/// <summary>An NCCL call returned something other than <c>ncclSuccess</c>.</summary>
internal sealed class NcclException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> returning <paramref name="code"/>.</summary>
    public NcclException(string call, int code, string? description)
        : base($"{call} failed: {NcclResults.Name(code)} ({code}){(string.IsNullOrWhiteSpace(description) ? "" : ": " + description)}")
    {
        Call = call;
        Code = code;
        Description = description;
    }

    /// <summary>The NCCL function that failed (<c>ncclAllReduce</c>).</summary>
    public string Call { get; }

    /// <summary>The raw <c>ncclResult_t</c>.</summary>
    public int Code { get; }

    /// <summary>The code as an enum value (may be undefined for codes newer than this build).</summary>
    public NcclResult Result => (NcclResult)Code;

    /// <summary>What <c>ncclGetErrorString</c> said, if it could be asked.</summary>
    public string? Description { get; }
}
