namespace ActorTrain.Sync.Collectives;

/// <summary>
/// Reduction among the trainers of one node. Each of the node's <see cref="LocalSize"/>
/// trainers calls every operation with its own local rank and its own buffer of the same
/// length; a call returns once that trainer's part of the collective is done.
/// The buffer is split into <see cref="LocalSize"/> slices by <see cref="Partition"/>:
/// slice i belongs to local rank i.
/// </summary>
internal interface IIntraNodeCollective : IDisposable
{
    /// <summary>Name used in logs and configuration (<c>shared-memory</c>, <c>nccl</c>).</summary>
    string Name { get; }

    /// <summary>Number of trainers on this node taking part.</summary>
    int LocalSize { get; }

    /// <summary>After the call, slice <paramref name="localRank"/> of <paramref name="buffer"/> holds the sum of that slice over all local buffers.</summary>
    void ReduceScatter(int localRank, Memory<float> buffer, CancellationToken cancellationToken);

    /// <summary>After the call, every slice j of <paramref name="buffer"/> equals slice j of local rank j's buffer.</summary>
    void AllGather(int localRank, Memory<float> buffer, CancellationToken cancellationToken);

    /// <summary>After the call, every local buffer holds the element-wise sum of all local buffers.</summary>
    void AllReduce(int localRank, Memory<float> buffer, CancellationToken cancellationToken);

    /// <summary>After the call, every local buffer equals local rank <paramref name="rootLocalRank"/>'s buffer (copied, not summed).</summary>
    void Broadcast(int localRank, int rootLocalRank, Memory<float> buffer, CancellationToken cancellationToken);
}
