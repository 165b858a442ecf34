using ActorTrain.Sync.Collectives.Nccl;

namespace ActorTrain.Sync.Collectives;

/// <summary>The intra-node collective a node will use, which backend it is, and why it was chosen (for the log).</summary>
internal sealed record IntraNodeSelection(IIntraNodeCollective Collective, IntraNodeBackend Backend, string Reason);

/// <summary>Picks and creates the intra-node collective for a node; fails loudly when the requested one cannot work.</summary>
internal static class IntraNodeCollectives
{
    private static readonly (string Name, IntraNodeBackend Backend)[] Names =
    [
        ("auto", IntraNodeBackend.Auto),
        ("shared-memory", IntraNodeBackend.SharedMemory),
        ("nccl", IntraNodeBackend.Nccl),
    ];

    /// <summary>
    /// Creates the collective for <paramref name="localSize"/> trainers (CUDA trainers on devices
    /// 0..localSize-1); see <see cref="Select"/>.
    /// </summary>
    public static IIntraNodeCollective Create(IntraNodeBackend backend, int localSize, bool devicesAreCuda) =>
        Select(backend, localSize, devicesAreCuda, ncclLibraryPath: null).Collective;

    /// <summary>
    /// Chooses and creates the collective for <paramref name="localSize"/> trainers; CUDA trainers
    /// are on devices 0..localSize-1. <see cref="IntraNodeBackend.Auto"/> takes NCCL when the trainers
    /// are on CUDA and NCCL and the CUDA runtime load and set up communicators, and shared memory
    /// otherwise (then the trainers' buckets are host memory, so shared memory works for CUDA trainers
    /// too; with NCCL they stay on the device). <see cref="IntraNodeBackend.Nccl"/> where NCCL cannot work throws an
    /// <see cref="InvalidOperationException"/> naming what was probed.
    /// </summary>
    /// <param name="ncclLibraryPath">The configured NCCL library: a file or folder probed first; empty for none.</param>
    /// <param name="locations">Where to look for the libraries after that; null: this process's environment.</param>
    public static IntraNodeSelection Select(
        IntraNodeBackend backend,
        int localSize,
        bool devicesAreCuda,
        string? ncclLibraryPath,
        ProbeLocations? locations = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(localSize);
        switch (backend)
        {
            case IntraNodeBackend.SharedMemory:
                return SharedMemory(localSize, "intra-node backend shared-memory");

            case IntraNodeBackend.Nccl:
                if (!devicesAreCuda)
                {
                    throw new InvalidOperationException(
                        "the NCCL intra-node backend needs CUDA trainers, but this node's trainers run on the CPU; use shared-memory or auto");
                }

                return TryNccl(localSize, ncclLibraryPath, locations, out var nccl, out var why)
                    ? nccl!
                    : throw new InvalidOperationException(
                        $"the intra-node backend is nccl, but {why}. Configure the NCCL library with libnccl.so.2's path or folder, " +
                        "add its folder to LD_LIBRARY_PATH, or use the auto or shared-memory backend");

            case IntraNodeBackend.Auto:
                if (!devicesAreCuda)
                {
                    return SharedMemory(localSize, "intra-node backend auto and the trainers run on the CPU");
                }

                return TryNccl(localSize, ncclLibraryPath, locations, out var chosen, out var reason)
                    ? chosen!
                    : SharedMemory(localSize, $"intra-node backend auto, CUDA trainers, but {reason}; gradients are reduced in host memory instead");

            default:
                throw new ArgumentOutOfRangeException(nameof(backend), backend, "Unknown intra-node backend.");
        }
    }

    private static IntraNodeSelection SharedMemory(int localSize, string reason) =>
        new(new SharedMemoryCollective(localSize), IntraNodeBackend.SharedMemory, reason);

    private static bool TryNccl(int localSize, string? ncclLibraryPath, ProbeLocations? locations, out IntraNodeSelection? selection, out string whyNot)
    {
        selection = null;
        locations ??= ProbeLocations.FromEnvironment();
        if (!NcclLibrary.TryLoad(ncclLibraryPath, locations, out var nccl, out var ncclReport))
        {
            whyNot = $"NCCL does not load: {ncclReport}";
            return false;
        }

        // The CUDA runtime usually sits beside NCCL (pip wheels, CUDA toolkit): probe NCCL's folder too.
        if (!CudaRuntime.TryLoad(Path.GetDirectoryName(nccl!.Path), locations, out var cuda, out var cudaReport))
        {
            whyNot = $"NCCL {nccl.VersionText} loads from {nccl.Path} but {cudaReport}";
            return false;
        }

        var count = cuda!.TryGetDeviceCount(out var deviceReason);
        if (count < localSize)
        {
            whyNot = $"NCCL {nccl.VersionText} and the CUDA runtime load, but {localSize} trainer(s) need as many CUDA devices and {deviceReason}";
            return false;
        }

        try
        {
            var collective = NcclCollective.Create(nccl, cuda, Enumerable.Range(0, localSize).ToArray());
            selection = new IntraNodeSelection(collective, IntraNodeBackend.Nccl, $"{collective.Description} ({ncclReport})");
            whyNot = "";
            return true;
        }
        catch (InvalidOperationException e)
        {
            whyNot = e.Message;
            return false;
        }
    }

    /// <summary>
    /// Parses a setting value (<c>auto</c>, <c>shared-memory</c> or <c>nccl</c>, case-insensitive);
    /// <paramref name="settingPath"/> names the setting in the error message.
    /// </summary>
    public static IntraNodeBackend Parse(string value, string settingPath)
    {
        var trimmed = value?.Trim();
        foreach (var (name, backend) in Names)
        {
            if (string.Equals(trimmed, name, StringComparison.OrdinalIgnoreCase))
            {
                return backend;
            }
        }

        var allowed = string.Join(" | ", Names.Select(n => n.Name));
        throw new ArgumentException(
            $"Setting '{settingPath}' is '{value}'; allowed values are {allowed}.", nameof(value));
    }

    /// <summary>The setting value that <see cref="Parse"/> maps to <paramref name="backend"/>.</summary>
    public static string ToSettingValue(IntraNodeBackend backend) =>
        Names.First(n => n.Backend == backend).Name;
}
