namespace ActorTrain.TrainerActors.Checkpoints;

/// <summary>
/// Everything a job needs to resume: where training stood, and named binary sections
/// (<see cref="ModelSection"/>, <see cref="OptimizerSection"/>, and any others a caller adds,
/// such as <see cref="HistorySection"/>).
/// </summary>
internal sealed class TrainingState
{
    public const string ModelSection = "model";
    public const string OptimizerSection = "optimizer";
    /// <summary>The coordinator's run history (JSON), by convention.</summary>
    public const string HistorySection = "history";

    public const int MaxSectionNameLength = 64;

    public required string JobId { get; init; }
    public required string ModelFingerprint { get; init; }
    /// <summary>The epoch in progress, 1-based.</summary>
    public required int Epoch { get; init; }
    /// <summary>Samples of <see cref="Epoch"/> already consumed: the epoch's sample cursor.</summary>
    public required long SamplesConsumedInEpoch { get; init; }
    /// <summary>Completed optimizer steps since the start of the job.</summary>
    public required long GlobalStep { get; init; }
    /// <summary>World size when the checkpoint was taken.</summary>
    public required int WorldSize { get; init; }
    public required int Seed { get; init; }
    public required DateTime CreatedUtc { get; init; }
    public required IReadOnlyDictionary<string, byte[]> Sections { get; init; }

    public byte[]? Section(string name) => Sections.TryGetValue(name, out var bytes) ? bytes : null;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first field that cannot be written.</summary>
    public void Validate()
    {
        if (JobId is null) throw new ArgumentException("job id is null", nameof(JobId));
        if (ModelFingerprint is null) throw new ArgumentException("model fingerprint is null", nameof(ModelFingerprint));
        if (Epoch < 1) throw new ArgumentException($"epoch must be at least 1, got {Epoch}", nameof(Epoch));
        if (SamplesConsumedInEpoch < 0) throw new ArgumentException($"samples consumed must not be negative, got {SamplesConsumedInEpoch}", nameof(SamplesConsumedInEpoch));
        if (GlobalStep < 0) throw new ArgumentException($"global step must not be negative, got {GlobalStep}", nameof(GlobalStep));
        if (WorldSize < 1) throw new ArgumentException($"world size must be at least 1, got {WorldSize}", nameof(WorldSize));
        if (CreatedUtc.Kind != DateTimeKind.Utc) throw new ArgumentException("created time must be UTC", nameof(CreatedUtc));
        if (Sections is null) throw new ArgumentException("sections are null", nameof(Sections));
        foreach (var (name, bytes) in Sections)
        {
            if (!IsValidSectionName(name))
                throw new ArgumentException($"section name \"{name}\" must be 1 to {MaxSectionNameLength} characters of a-z, 0-9, '-', '_' or '.'", nameof(Sections));
            if (bytes is null) throw new ArgumentException($"section \"{name}\" is null", nameof(Sections));
        }
    }

    public static bool IsValidSectionName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= MaxSectionNameLength
        && name.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '_' or '.');
}
