namespace ActorTrain.Sync.Collectives;

/// <summary>
/// Reduction among the trainers of one node on device memory (CUDA). Each of the node's
/// <see cref="LocalSize"/> trainers calls every operation from its own thread with its own local
/// rank and a device pointer to <c>count</c> float32 elements on its own device
/// (<see cref="DeviceOf"/>); all must pass the same count. Slices follow <see cref="Partition"/>
/// as in <see cref="IIntraNodeCollective"/>.
/// </summary>
internal interface IDeviceIntraNodeCollective : IDisposable
{
    /// <summary>Number of trainers on this node taking part.</summary>
    int LocalSize { get; }

    /// <summary>Copies between the devices' memory and the host (the CUDA runtime the collective was made with).</summary>
    IDeviceMemory Memory { get; }

    /// <summary>The CUDA device ordinal that local rank <paramref name="localRank"/> works on.</summary>
    int DeviceOf(int localRank);

    /// <summary>After the call, slice <paramref name="localRank"/> holds the sum of that slice over all local buffers.</summary>
    void ReduceScatter(int localRank, IntPtr devicePointer, long count, CancellationToken cancellationToken);

    /// <summary>After the call, every slice j equals slice j of local rank j's buffer.</summary>
    void AllGather(int localRank, IntPtr devicePointer, long count, CancellationToken cancellationToken);

    /// <summary>After the call, every local buffer holds the element-wise sum of all local buffers.</summary>
    void AllReduce(int localRank, IntPtr devicePointer, long count, CancellationToken cancellationToken);

    /// <summary>After the call, every local buffer equals local rank <paramref name="rootLocalRank"/>'s buffer.</summary>
    void Broadcast(int localRank, int rootLocalRank, IntPtr devicePointer, long count, CancellationToken cancellationToken);
}
