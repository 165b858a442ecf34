using System.Diagnostics;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Ring;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync;

/// <summary>
/// Horovod's hierarchical all-reduce: intra-node reduce-scatter, one cross-node ring per local rank
/// on that rank's slice, intra-node all-gather. Each node sends only 1/localSize of the buffer per
/// trainer across the network, and the rings of the local ranks run in parallel. Afterwards every
/// trainer on every node holds the global sum; the caller divides by the world size.
/// A wire compression applies to the cross-node ring only (see <see cref="RingAllReduce"/>);
/// the intra-node parts always move float32.
/// </summary>
public static class HierarchicalAllReduce
{
    /// <summary>
    /// Runs the all-reduce for one trainer. The intra-node parts block the thread that runs them:
    /// the reduce-scatter runs on the caller's thread, the all-gather on the thread that resumes after
    /// the ring (the caller's synchronization context if it has one, else a pool thread). A trainer
    /// that owns a dedicated thread should prefer <see cref="Run"/>, which keeps both on that thread.
    /// </summary>
    public static Task<SyncTimings> RunAsync(
        IIntraNodeCollective intra,
        int localRank,
        IRingTransport? crossNode,
        Memory<float> buffer,
        long generation,
        long step,
        int bucket,
        CancellationToken cancellationToken,
        WireCompression compression = WireCompression.None) =>
        RunCoreAsync(intra, localRank, crossNode, buffer, generation, step, bucket, blockOnRing: false, compression, cancellationToken);

    /// <summary>
    /// Same as <see cref="RunAsync"/>, but blocks the calling thread for the cross-node ring too, so
    /// the all-gather's barrier waits on the trainer's own thread rather than on a pool thread.
    /// </summary>
    public static SyncTimings Run(
        IIntraNodeCollective intra,
        int localRank,
        IRingTransport? crossNode,
        Memory<float> buffer,
        long generation,
        long step,
        int bucket,
        CancellationToken cancellationToken,
        WireCompression compression = WireCompression.None) =>
        RunCoreAsync(intra, localRank, crossNode, buffer, generation, step, bucket, blockOnRing: true, compression, cancellationToken)
            .GetAwaiter().GetResult();

    private static async Task<SyncTimings> RunCoreAsync(
        IIntraNodeCollective intra,
        int localRank,
        IRingTransport? crossNode,
        Memory<float> buffer,
        long generation,
        long step,
        int bucket,
        bool blockOnRing,
        WireCompression compression,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(intra);

        long start = Stopwatch.GetTimestamp();
        intra.ReduceScatter(localRank, buffer, cancellationToken);
        double intraMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;

        double crossMs = 0;
        if (crossNode is { PeerCount: > 1 })
        {
            var (offset, count) = Partition.Slice(buffer.Length, intra.LocalSize, localRank);
            start = Stopwatch.GetTimestamp();
            var ring = RingAllReduce.RunAsync(
                crossNode, buffer.Slice(offset, count), generation, step, bucket, lane: localRank, cancellationToken, compression);
            if (blockOnRing)
            {
                ring.GetAwaiter().GetResult();
            }
            else
            {
                // No ConfigureAwait(false): the all-gather blocks, so resume on the caller's context when it has one.
                await ring;
            }

            crossMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        start = Stopwatch.GetTimestamp();
        intra.AllGather(localRank, buffer, cancellationToken);
        intraMs += Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        return new SyncTimings(intraMs, crossMs);
    }
}
