namespace ActorTrain.TrainerActors.Checkpoints;

/// <summary>A checkpoint could not be written (unwritable directory, full disk, ...).</summary>
internal sealed class CheckpointWriteException(string path, string reason, Exception? inner = null)
    : IOException($"cannot write checkpoint {path}: {reason}", inner)
{
    public string Path { get; } = path;
    public string Reason { get; } = reason;
}

/// <summary>A checkpoint file failed verification: truncated, corrupt, or not a checkpoint.</summary>
internal sealed class InvalidCheckpointException(string path, string reason, Exception? inner = null)
    : IOException($"invalid checkpoint {path}: {reason}", inner)
{
    public string Path { get; } = path;
    public string Reason { get; } = reason;
}
