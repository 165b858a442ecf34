using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace ActorTrain.Sync.Collectives.Nccl;

/// <summary>
/// The few CUDA runtime functions the NCCL backend and the GPU probe need (device choice, device
/// memory, copies, streams), bound from a probed <c>libcudart</c> like <see cref="NcclLibrary"/>.
/// The current device is per thread: call <see cref="SetDevice"/> on the thread that allocates or
/// enqueues work. Every failing call throws a <see cref="CudaException"/>.
/// </summary>
internal sealed unsafe class CudaRuntime : IDeviceMemory
{
    /// <summary>File names of the CUDA runtime: the development link, then the sonames of CUDA 13, 12 and 11 (pip wheels ship only those).</summary>
    public static readonly IReadOnlyList<string> FileNames = ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"];

    // One binding per loaded file; loading it again only bumps the loader's reference count.
    private static readonly ConcurrentDictionary<string, CudaRuntime> Loaded = new(StringComparer.Ordinal);

    private readonly delegate* unmanaged<int*, int> _getDeviceCount;
    private readonly delegate* unmanaged<int, int> _setDevice;
    private readonly delegate* unmanaged<IntPtr*, nuint, int> _malloc;
    private readonly delegate* unmanaged<IntPtr, int> _free;
    private readonly delegate* unmanaged<IntPtr, IntPtr, nuint, int, int> _memcpy;
    private readonly delegate* unmanaged<IntPtr, int, nuint, int> _memset;
    private readonly delegate* unmanaged<IntPtr*, int> _streamCreate;
    private readonly delegate* unmanaged<IntPtr, int> _streamDestroy;
    private readonly delegate* unmanaged<IntPtr, int> _streamSynchronize;
    private readonly delegate* unmanaged<IntPtr, int> _streamQuery;
    private readonly delegate* unmanaged<int, byte*> _getErrorString;
    private readonly delegate* unmanaged<int, byte*> _getErrorName;
    private readonly delegate* unmanaged<int*, int> _runtimeGetVersion;
    private readonly delegate* unmanaged<int*, int> _driverGetVersion;

    private CudaRuntime(IntPtr handle, ProbeCandidate source)
    {
        Path = source.Path;
        Source = source.Source;
        _getDeviceCount = (delegate* unmanaged<int*, int>)Export(handle, "cudaGetDeviceCount");
        _setDevice = (delegate* unmanaged<int, int>)Export(handle, "cudaSetDevice");
        _malloc = (delegate* unmanaged<IntPtr*, nuint, int>)Export(handle, "cudaMalloc");
        _free = (delegate* unmanaged<IntPtr, int>)Export(handle, "cudaFree");
        _memcpy = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, int>)Export(handle, "cudaMemcpy");
        _memset = (delegate* unmanaged<IntPtr, int, nuint, int>)Export(handle, "cudaMemset");
        _streamCreate = (delegate* unmanaged<IntPtr*, int>)Export(handle, "cudaStreamCreate");
        _streamDestroy = (delegate* unmanaged<IntPtr, int>)Export(handle, "cudaStreamDestroy");
        _streamSynchronize = (delegate* unmanaged<IntPtr, int>)Export(handle, "cudaStreamSynchronize");
        _streamQuery = (delegate* unmanaged<IntPtr, int>)Export(handle, "cudaStreamQuery");
        _getErrorString = (delegate* unmanaged<int, byte*>)Export(handle, "cudaGetErrorString");
        _getErrorName = (delegate* unmanaged<int, byte*>)Export(handle, "cudaGetErrorName");
        _runtimeGetVersion = (delegate* unmanaged<int*, int>)Export(handle, "cudaRuntimeGetVersion");
        _driverGetVersion = (delegate* unmanaged<int*, int>)Export(handle, "cudaDriverGetVersion");
    }

    /// <summary>The file that was loaded.</summary>
    public string Path { get; }

    /// <summary>Where <see cref="Path"/> was found.</summary>
    public string Source { get; }

    /// <summary>
    /// Loads the CUDA runtime, probing <paramref name="configuredPath"/> (a file or folder; empty: none) first.
    /// Returns false with a report of every place probed when it cannot.
    /// </summary>
    public static bool TryLoad(string? configuredPath, out CudaRuntime? runtime, out string report) =>
        TryLoad(configuredPath, ProbeLocations.FromEnvironment(), out runtime, out report);

    /// <inheritdoc cref="TryLoad(string?, out CudaRuntime?, out string)"/>
    public static bool TryLoad(string? configuredPath, ProbeLocations locations, out CudaRuntime? runtime, out string report)
    {
        var candidates = NativeLibraryProbe.Candidates(FileNames, configuredPath, locations);
        if (!NativeLibraryProbe.TryLoad(candidates, "cudaMalloc", out var handle, out var loaded, out report))
        {
            runtime = null;
            report = $"the CUDA runtime ({string.Join(" or ", FileNames)}) {report}";
            return false;
        }

        try
        {
            runtime = Loaded.GetOrAdd(loaded!.Path, _ => new CudaRuntime(handle, loaded));
        }
        catch (EntryPointNotFoundException e)
        {
            runtime = null;
            report = $"the CUDA runtime at {loaded!.Path} lacks a function this build needs ({e.Message})";
            return false;
        }

        report = $"CUDA runtime from {runtime.Path} ({runtime.Source})";
        return true;
    }

    /// <summary><c>cudaRuntimeGetVersion</c> (12040 for 12.4).</summary>
    public int RuntimeVersion()
    {
        int version;
        Check("cudaRuntimeGetVersion", _runtimeGetVersion(&version));
        return version;
    }

    /// <summary><c>cudaDriverGetVersion</c>: the newest CUDA the installed driver supports; 0 when no driver is installed.</summary>
    public int DriverVersion()
    {
        int version;
        Check("cudaDriverGetVersion", _driverGetVersion(&version));
        return version;
    }

    /// <summary><c>major.minor</c> of a CUDA version code (12040 → 12.4).</summary>
    public static string FormatVersion(int code) => $"{code / 1000}.{code % 1000 / 10}";

    /// <summary><c>cudaGetDeviceCount</c>; throws when there is no driver or no device (<see cref="TryGetDeviceCount"/> does not).</summary>
    public int GetDeviceCount()
    {
        int count;
        Check("cudaGetDeviceCount", _getDeviceCount(&count));
        return count;
    }

    /// <summary>The number of visible devices, or 0 with the reason when CUDA reports none (no driver, no device).</summary>
    public int TryGetDeviceCount(out string reason)
    {
        int count;
        var code = _getDeviceCount(&count);
        if (code != CudaErrors.Success)
        {
            reason = CudaErrors.Describe("cudaGetDeviceCount", code, ErrorName(code), ErrorString(code));
            return 0;
        }

        reason = count == 0 ? "cudaGetDeviceCount reports 0 devices" : $"{count} device(s)";
        return count;
    }

    /// <summary><c>cudaSetDevice</c> for the calling thread.</summary>
    public void SetDevice(int device) => Check("cudaSetDevice", _setDevice(device));

    /// <summary><c>cudaMalloc</c> on the calling thread's current device.</summary>
    public IntPtr Malloc(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        IntPtr pointer;
        Check("cudaMalloc", _malloc(&pointer, (nuint)bytes));
        return pointer;
    }

    /// <summary><c>cudaFree</c>.</summary>
    public void Free(IntPtr devicePointer) => Check("cudaFree", _free(devicePointer));

    /// <summary><c>cudaMemcpy</c> (synchronous with respect to the host for pageable memory).</summary>
    public void Memcpy(IntPtr destination, IntPtr source, long bytes, CudaMemcpyKind kind)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        if (bytes > 0)
        {
            Check("cudaMemcpy", _memcpy(destination, source, (nuint)bytes, (int)kind));
        }
    }

    /// <summary>Copies <paramref name="source"/> to device memory at <paramref name="destination"/>.</summary>
    public void CopyToDevice(ReadOnlySpan<float> source, IntPtr destination)
    {
        fixed (float* s = source)
        {
            Memcpy(destination, (IntPtr)s, (long)source.Length * sizeof(float), CudaMemcpyKind.HostToDevice);
        }
    }

    /// <summary>Copies device memory at <paramref name="source"/> into <paramref name="destination"/>.</summary>
    public void CopyToHost(IntPtr source, Span<float> destination)
    {
        fixed (float* d = destination)
        {
            Memcpy((IntPtr)d, source, (long)destination.Length * sizeof(float), CudaMemcpyKind.DeviceToHost);
        }
    }

    /// <summary><c>cudaMemset</c>.</summary>
    public void Memset(IntPtr devicePointer, byte value, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        if (bytes > 0)
        {
            Check("cudaMemset", _memset(devicePointer, value, (nuint)bytes));
        }
    }

    /// <summary><c>cudaStreamCreate</c> on the calling thread's current device.</summary>
    public IntPtr StreamCreate()
    {
        IntPtr stream;
        Check("cudaStreamCreate", _streamCreate(&stream));
        return stream;
    }

    /// <summary><c>cudaStreamDestroy</c>.</summary>
    public void StreamDestroy(IntPtr stream) => Check("cudaStreamDestroy", _streamDestroy(stream));

    /// <summary><c>cudaStreamSynchronize</c>.</summary>
    public void StreamSynchronize(IntPtr stream) => Check("cudaStreamSynchronize", _streamSynchronize(stream));

    /// <summary><c>cudaStreamQuery</c>: true when all work on the stream is done, false while some is pending.</summary>
    public bool StreamQuery(IntPtr stream)
    {
        var code = _streamQuery(stream);
        if (code == CudaErrors.NotReady)
        {
            return false;
        }

        Check("cudaStreamQuery", code);
        return true;
    }

    /// <summary><c>cudaGetErrorString</c>.</summary>
    public string ErrorString(int code) => Utf8(_getErrorString(code));

    /// <summary><c>cudaGetErrorName</c> (<c>cudaErrorNoDevice</c>).</summary>
    public string ErrorName(int code) => Utf8(_getErrorName(code));

    private void Check(string call, int code)
    {
        if (code != CudaErrors.Success)
        {
            throw new CudaException(call, code, ErrorName(code), ErrorString(code));
        }
    }

    private static string Utf8(byte* text) => text is null ? "" : Marshal.PtrToStringUTF8((IntPtr)text) ?? "";

    private static IntPtr Export(IntPtr handle, string name) =>
        NativeLibrary.TryGetExport(handle, name, out var address)
            ? address
            : throw new EntryPointNotFoundException($"{name} is not exported");
}

/// <summary><c>cudaMemcpyKind</c>.</summary>
internal enum CudaMemcpyKind
{
    HostToHost = 0,
    HostToDevice = 1,
    DeviceToHost = 2,
    DeviceToDevice = 3,
    Default = 4,
}

/// <summary>The <c>cudaError_t</c> codes this project acts on, and message formatting.</summary>
internal static class CudaErrors
{
    public const int Success = 0;
    public const int InsufficientDriver = 35;
    public const int NoDevice = 100;
    public const int NotReady = 600;

    /// <summary>One line for a failed call: <c>cudaMalloc failed: cudaErrorMemoryAllocation (2): out of memory</c>.</summary>
    public static string Describe(string call, int code, string? name, string? description)
    {
        var label = string.IsNullOrWhiteSpace(name) ? $"cudaError {code}" : name;
        return $"{call} failed: {label} ({code}){(string.IsNullOrWhiteSpace(description) ? "" : ": " + description)}";
    }
}

/// <summary>A CUDA runtime call returned something other than <c>cudaSuccess</c>.</summary>
internal sealed class CudaException : Exception
{
    /// <summary>Creates the exception for <paramref name="call"/> returning <paramref name="code"/>.</summary>
    public CudaException(string call, int code, string? name, string? description)
        : base(CudaErrors.Describe(call, code, name, description))
    {
        Call = call;
        Code = code;
    }

    /// <summary>The CUDA runtime function that failed.</summary>
    public string Call { get; }

    /// <summary>The raw <c>cudaError_t</c>.</summary>
    public int Code { get; }
}
