namespace ActorTrain.Sync.Collectives;

/// <summary>Which <see cref="IIntraNodeCollective"/> a node uses (configured as <c>auto | shared-memory | nccl</c>).</summary>
public enum IntraNodeBackend
{
    /// <summary>Shared memory for CPU trainers, NCCL for CUDA trainers.</summary>
    Auto,

    /// <summary><see cref="SharedMemoryCollective"/>: trainers in one process reading each other's buffers.</summary>
    SharedMemory,

    /// <summary>NCCL on device pointers (CUDA trainers).</summary>
    Nccl,
}
