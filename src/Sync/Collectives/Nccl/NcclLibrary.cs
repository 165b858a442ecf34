using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace ActorTrain.Sync.Collectives.Nccl;

/// <summary>
/// <c>libnccl.so.2</c> bound through function pointers resolved from a probed path
/// (see <see cref="NativeLibraryProbe"/>), so the path can be configured and a missing library is an
/// ordinary, explainable failure rather than a <see cref="DllNotFoundException"/> at the first call.
/// Every call that returns something other than <c>ncclSuccess</c> throws an <see cref="NcclException"/>
/// naming the call, the code and NCCL's own description of it.
/// Communicators and streams are opaque handles (<c>ncclComm_t</c>, <c>cudaStream_t</c>).
/// </summary>
internal sealed unsafe class NcclLibrary
{
    /// <summary>File names NCCL is installed under (the soname first).</summary>
    public static readonly IReadOnlyList<string> FileNames = ["libnccl.so.2", "libnccl.so"];

    // One binding per loaded file; loading it again only bumps the loader's reference count.
    private static readonly ConcurrentDictionary<string, NcclLibrary> Loaded = new(StringComparer.Ordinal);

    private readonly delegate* unmanaged<int*, int> _getVersion;
    private readonly delegate* unmanaged<NcclUniqueId*, int> _getUniqueId;
    private readonly delegate* unmanaged<IntPtr*, int, NcclUniqueId, int, int> _commInitRank;
    private readonly delegate* unmanaged<IntPtr*, int, int*, int> _commInitAll;
    private readonly delegate* unmanaged<IntPtr, int> _commDestroy;
    private readonly delegate* unmanaged<IntPtr, int> _commAbort;
    private readonly delegate* unmanaged<IntPtr, int*, int> _commGetAsyncError;
    private readonly delegate* unmanaged<int, byte*> _getErrorString;
    private readonly delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int> _allReduce;
    private readonly delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int> _reduceScatter;
    private readonly delegate* unmanaged<IntPtr, IntPtr, nuint, int, IntPtr, IntPtr, int> _allGather;
    private readonly delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int> _broadcast;
    private readonly delegate* unmanaged<int> _groupStart;
    private readonly delegate* unmanaged<int> _groupEnd;

    private NcclLibrary(IntPtr handle, ProbeCandidate source)
    {
        Path = source.Path;
        Source = source.Source;
        _getVersion = (delegate* unmanaged<int*, int>)Export(handle, "ncclGetVersion");
        _getUniqueId = (delegate* unmanaged<NcclUniqueId*, int>)Export(handle, "ncclGetUniqueId");
        _commInitRank = (delegate* unmanaged<IntPtr*, int, NcclUniqueId, int, int>)Export(handle, "ncclCommInitRank");
        _commInitAll = (delegate* unmanaged<IntPtr*, int, int*, int>)Export(handle, "ncclCommInitAll");
        _commDestroy = (delegate* unmanaged<IntPtr, int>)Export(handle, "ncclCommDestroy");
        _commAbort = (delegate* unmanaged<IntPtr, int>)Export(handle, "ncclCommAbort");
        _commGetAsyncError = (delegate* unmanaged<IntPtr, int*, int>)Export(handle, "ncclCommGetAsyncError");
        _getErrorString = (delegate* unmanaged<int, byte*>)Export(handle, "ncclGetErrorString");
        _allReduce = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)Export(handle, "ncclAllReduce");
        _reduceScatter = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)Export(handle, "ncclReduceScatter");
        _allGather = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, IntPtr, IntPtr, int>)Export(handle, "ncclAllGather");
        _broadcast = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)Export(handle, "ncclBroadcast");
        _groupStart = (delegate* unmanaged<int>)Export(handle, "ncclGroupStart");
        _groupEnd = (delegate* unmanaged<int>)Export(handle, "ncclGroupEnd");
        Version = GetVersion();
    }

    /// <summary>The file that was loaded.</summary>
    public string Path { get; }

    /// <summary>Where <see cref="Path"/> was found (configured path, LD_LIBRARY_PATH, …).</summary>
    public string Source { get; }

    /// <summary><c>ncclGetVersion</c>'s code (21903 for 2.19.3; 2.8 and older: 2803).</summary>
    public int Version { get; }

    /// <summary>The version as <c>major.minor.patch</c>.</summary>
    public string VersionText => FormatVersion(Version);

    /// <summary>
    /// Loads NCCL, probing <paramref name="configuredPath"/> (a file or folder; empty: none) first.
    /// Returns false with a report of every place probed when it cannot.
    /// </summary>
    public static bool TryLoad(string? configuredPath, out NcclLibrary? library, out string report) =>
        TryLoad(configuredPath, ProbeLocations.FromEnvironment(), out library, out report);

    /// <inheritdoc cref="TryLoad(string?, out NcclLibrary?, out string)"/>
    public static bool TryLoad(string? configuredPath, ProbeLocations locations, out NcclLibrary? library, out string report)
    {
        var candidates = NativeLibraryProbe.Candidates(FileNames, configuredPath, locations);
        if (!NativeLibraryProbe.TryLoad(candidates, "ncclCommInitRank", out var handle, out var loaded, out report))
        {
            library = null;
            report = $"NCCL ({string.Join(" or ", FileNames)}) {report}";
            return false;
        }

        try
        {
            library = Loaded.GetOrAdd(loaded!.Path, _ => new NcclLibrary(handle, loaded));
        }
        catch (EntryPointNotFoundException e)
        {
            library = null;
            report = $"NCCL at {loaded!.Path} lacks a function this build needs ({e.Message}); NCCL 2.4 or newer is required";
            return false;
        }

        report = $"NCCL {library.VersionText} from {library.Path} ({library.Source})";
        return true;
    }

    /// <summary>Loads NCCL or throws an <see cref="InvalidOperationException"/> naming everything probed.</summary>
    public static NcclLibrary Load(string? configuredPath) =>
        TryLoad(configuredPath, out var library, out var report)
            ? library!
            : throw new InvalidOperationException(
                $"cannot load NCCL: {report}. Configure the NCCL library with its path, or add its folder to LD_LIBRARY_PATH");

    /// <summary><c>major.minor.patch</c> of an <c>ncclGetVersion</c> code (new scheme from 2.9: X*10000+Y*100+Z).</summary>
    public static string FormatVersion(int code) => code >= 10000
        ? $"{code / 10000}.{code % 10000 / 100}.{code % 100}"
        : $"{code / 1000}.{code % 1000 / 100}.{code % 100}";

    /// <summary><c>ncclGetErrorString</c>.</summary>
    public string GetErrorString(int code)
    {
        var text = _getErrorString(code);
        return text is null ? "" : Marshal.PtrToStringUTF8((IntPtr)text) ?? "";
    }

    /// <summary><c>ncclGetUniqueId</c>.</summary>
    public NcclUniqueId GetUniqueId()
    {
        NcclUniqueId id;
        Check("ncclGetUniqueId", _getUniqueId(&id));
        return id;
    }

    /// <summary><c>ncclCommInitRank</c>: joins rank <paramref name="rank"/> of <paramref name="ranks"/> to the communicator of <paramref name="id"/> on the current CUDA device. Blocks until all ranks have joined, unless inside a group.</summary>
    public IntPtr CommInitRank(int ranks, NcclUniqueId id, int rank)
    {
        IntPtr comm;
        Check("ncclCommInitRank", _commInitRank(&comm, ranks, id, rank));
        return comm;
    }

    /// <summary><c>ncclCommInitAll</c>: one communicator per device of <paramref name="devices"/>, in one process.</summary>
    public IntPtr[] CommInitAll(IReadOnlyList<int> devices)
    {
        var comms = new IntPtr[devices.Count];
        var list = devices.ToArray();
        fixed (IntPtr* c = comms)
        fixed (int* d = list)
        {
            Check("ncclCommInitAll", _commInitAll(c, list.Length, d));
        }

        return comms;
    }

    /// <summary><c>ncclCommDestroy</c>: waits for pending work, then frees the communicator.</summary>
    public void CommDestroy(IntPtr comm) => Check("ncclCommDestroy", _commDestroy(comm));

    /// <summary><c>ncclCommAbort</c>: frees the communicator at once, abandoning pending work.</summary>
    public void CommAbort(IntPtr comm) => Check("ncclCommAbort", _commAbort(comm));

    /// <summary><c>ncclCommGetAsyncError</c>: an error raised in the background (network, peer), or success.</summary>
    public int CommGetAsyncError(IntPtr comm)
    {
        int error;
        Check("ncclCommGetAsyncError", _commGetAsyncError(comm, &error));
        return error;
    }

    /// <summary><c>ncclAllReduce</c> of <see cref="NcclBuffers.Count"/> elements (enqueued on the queue's stream).</summary>
    public void AllReduce(NcclBuffers b, NcclRedOp op, NcclQueue q) =>
        Check("ncclAllReduce", _allReduce(b.Send, b.Receive, Count(b.Count), (int)b.Type, (int)op, q.Comm, q.Stream));

    /// <summary><c>ncclReduceScatter</c>: <see cref="NcclBuffers.Count"/> elements per rank received (enqueued on the queue's stream).</summary>
    public void ReduceScatter(NcclBuffers b, NcclRedOp op, NcclQueue q) =>
        Check("ncclReduceScatter", _reduceScatter(b.Send, b.Receive, Count(b.Count), (int)b.Type, (int)op, q.Comm, q.Stream));

    /// <summary><c>ncclAllGather</c>: <see cref="NcclBuffers.Count"/> elements per rank sent (enqueued on the queue's stream).</summary>
    public void AllGather(NcclBuffers b, NcclQueue q) =>
        Check("ncclAllGather", _allGather(b.Send, b.Receive, Count(b.Count), (int)b.Type, q.Comm, q.Stream));

    /// <summary><c>ncclBroadcast</c> from <paramref name="root"/> (enqueued on the queue's stream).</summary>
    public void Broadcast(NcclBuffers b, int root, NcclQueue q) =>
        Check("ncclBroadcast", _broadcast(b.Send, b.Receive, Count(b.Count), (int)b.Type, root, q.Comm, q.Stream));

    /// <summary><c>ncclGroupStart</c>.</summary>
    public void GroupStart() => Check("ncclGroupStart", _groupStart());

    /// <summary><c>ncclGroupEnd</c>.</summary>
    public void GroupEnd() => Check("ncclGroupEnd", _groupEnd());

    private int GetVersion()
    {
        int version;
        Check("ncclGetVersion", _getVersion(&version));
        return version;
    }

    private void Check(string call, int code) => NcclResults.ThrowIfFailed(call, code, GetErrorString);

    private static nuint Count(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return (nuint)count;
    }

    private static IntPtr Export(IntPtr handle, string name) =>
        NativeLibrary.TryGetExport(handle, name, out var address)
            ? address
            : throw new EntryPointNotFoundException($"{name} is not exported");
}
