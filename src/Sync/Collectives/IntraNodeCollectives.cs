namespace ActorTrain.Sync.Collectives;

/// <summary>Picks and creates the intra-node collective for a node; fails loudly when none fits.</summary>
public static class IntraNodeCollectives
{
    private const string NcclMissing =
        "the NCCL intra-node backend is not part of this build yet; use intra-node = shared-memory with CPU trainers";

    private static readonly (string Name, IntraNodeBackend Backend)[] Names =
    [
        ("auto", IntraNodeBackend.Auto),
        ("shared-memory", IntraNodeBackend.SharedMemory),
        ("nccl", IntraNodeBackend.Nccl),
    ];

    /// <summary>
    /// Creates the collective for <paramref name="localSize"/> trainers. <see cref="IntraNodeBackend.Auto"/>
    /// resolves to shared memory for CPU trainers and to NCCL for CUDA trainers.
    /// </summary>
    public static IIntraNodeCollective Create(IntraNodeBackend backend, int localSize, bool devicesAreCuda)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(localSize);
        var resolved = backend == IntraNodeBackend.Auto
            ? (devicesAreCuda ? IntraNodeBackend.Nccl : IntraNodeBackend.SharedMemory)
            : backend;
        return resolved switch
        {
            IntraNodeBackend.SharedMemory => new SharedMemoryCollective(localSize),

            // Slot for the NCCL backend (P/Invoke on device pointers), which a later task provides.
            IntraNodeBackend.Nccl => throw new NotSupportedException(NcclMissing),
            _ => throw new ArgumentOutOfRangeException(nameof(backend), backend, "Unknown intra-node backend."),
        };
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
