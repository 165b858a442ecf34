using System.Diagnostics;
using System.Runtime.InteropServices;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Ring;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync;

/// <summary>
/// Names one collective within a generation. Every member of the group calls the same collectives
/// with the same keys; two collectives in flight at once need different keys.
/// </summary>
/// <param name="Step">The training step (or, for collectives outside the step loop, the step they come before).</param>
/// <param name="Bucket">The bucket (or part) within the step; not negative.</param>
internal readonly record struct CollectiveKey(long Step, int Bucket);

/// <summary>Where one trainer stands in a generation's world.</summary>
/// <param name="Rank">Global rank: <c>NodeIndex × local size + LocalRank</c>.</param>
/// <param name="WorldSize">Number of trainers in the world: node count × local size.</param>
/// <param name="LocalRank">Rank among the trainers of its node.</param>
/// <param name="NodeIndex">The node's position in the cross-node ring.</param>
/// <param name="NodeCount">Number of nodes.</param>
internal readonly record struct GroupMember(int Rank, int WorldSize, int LocalRank, int NodeIndex, int NodeCount);

/// <summary>
/// The collectives of one trainer in one generation, in the manner of c10d's process group: it owns
/// the trainer's place in the world, the node's intra-node backend, the cross-node ring of this
/// trainer's local rank (null on a single node), the wire compression and the generation's token.
/// <para>
/// All-reduce, reduce-scatter and all-gather are hierarchical (Horovod's scheme): the intra-node
/// backend reduces the node's buffers so that local rank i holds slice i of the node's sum; the ring
/// of lane i sums slice i across the nodes, sending only 1/local-size of the buffer per trainer;
/// the intra-node backend then copies the slices to every local rank. The compression applies to
/// that ring only. Broadcasts copy: the root's node sends its data around the ring as a chain of
/// chunks, each node forwarding a chunk as soon as it has it, and inside every node the local root
/// copies its buffer to the others; values travel bit for bit, never summed.
/// </para>
/// Every operation blocks the calling thread (the trainer's own) until this trainer's part is done,
/// and ends with an <see cref="OperationCanceledException"/> when the generation or the caller's
/// token is cancelled.
/// </summary>
internal sealed class ProcessGroup
{
    // Each operation has its own chunk keys: the operation rides in the low bits of the key's bucket.
    // Reduce-scatter and all-gather use the all-reduce's keys: they are its two halves.
    private const int OperationKinds = 3;
    private const int AllReduceKind = 0;
    private const int BroadcastKind = 1;
    private const int BarrierKind = 2;

    /// <summary>
    /// The groups of one node's trainers for a generation, one per local rank, from the node's first
    /// trainer's place: they share the node's intra-node backend and cross-node ring. Where that backend
    /// works on device memory (NCCL), the groups reduce device buckets with it (<see cref="Device"/>).
    /// </summary>
    public static ProcessGroup[] ForNode(GroupMember firstTrainer, int localSize, IIntraNodeCollective intraNode, IRingTransport? ring,
        WireCompression compression, GenerationScope generation) =>
        Enumerable.Range(0, localSize)
            .Select(i => new ProcessGroup(firstTrainer with { Rank = firstTrainer.Rank + i, LocalRank = i }, intraNode, ring, compression, generation)
            {
                Device = intraNode is IDeviceIntraNodeCollective device ? new DeviceCollectives(device, device.Memory) : null,
            })
            .ToArray();

    /// <summary>Creates the group of one trainer; <paramref name="ring"/> must be null or connect the <see cref="GroupMember.NodeCount"/> nodes.</summary>
    public ProcessGroup(GroupMember member, IIntraNodeCollective intraNode, IRingTransport? ring, WireCompression compression, GenerationScope generation)
    {
        ArgumentNullException.ThrowIfNull(intraNode);
        if (!Enum.IsDefined(compression))
        {
            throw new ArgumentOutOfRangeException(nameof(compression), compression, "Unknown wire compression.");
        }

        int localSize = intraNode.LocalSize;
        if (member.NodeCount < 1 || (uint)member.NodeIndex >= (uint)member.NodeCount || (uint)member.LocalRank >= (uint)localSize
            || member.WorldSize != member.NodeCount * localSize || member.Rank != (member.NodeIndex * localSize) + member.LocalRank)
        {
            throw new ArgumentException(
                $"process group member {member} does not fit {member.NodeCount} node(s) of {localSize} trainer(s) " +
                "(rank = node index × local size + local rank, world size = nodes × local size)", nameof(member));
        }

        int ringPeers = ring?.PeerCount ?? 1;
        if (ringPeers != member.NodeCount || (ring is not null && ring.PeerIndex != member.NodeIndex))
        {
            throw new ArgumentException(
                $"the cross-node ring is peer {ring?.PeerIndex ?? 0} of {ringPeers}, but rank {member.Rank} is on node {member.NodeIndex} of {member.NodeCount}",
                nameof(ring));
        }

        Member = member;
        IntraNode = intraNode;
        Ring = ring is { PeerCount: > 1 } ? ring : null;
        Compression = compression;
        Generation = generation;
    }

    /// <summary>This trainer's place in the world.</summary>
    public GroupMember Member { get; }

    public int Rank => Member.Rank;

    public int WorldSize => Member.WorldSize;

    public int LocalRank => Member.LocalRank;

    public int LocalSize => IntraNode.LocalSize;

    /// <summary>The node's collective among its trainers.</summary>
    public IIntraNodeCollective IntraNode { get; }

    /// <summary>The cross-node ring of this trainer's local rank; null on a single node.</summary>
    public IRingTransport? Ring { get; }

    /// <summary>How the all-reduce's ring carries values (broadcasts always move exact bits).</summary>
    public WireCompression Compression { get; }

    /// <summary>The generation these collectives belong to, and its token.</summary>
    public GenerationScope Generation { get; }

    /// <summary>
    /// The node's collective on device memory, where trainers keep their buckets on CUDA devices; null
    /// where they do not (then <see cref="AllReduce(DeviceBuffer, CollectiveKey, CancellationToken)"/> is refused).
    /// </summary>
    public DeviceCollectives? Device { get; init; }

    /// <summary>
    /// The part of a buffer of <paramref name="length"/> elements that this trainer holds reduced after
    /// <see cref="ReduceScatter"/>: the ring segment this node owns within the slice of this local rank.
    /// </summary>
    public (int Offset, int Count) ShardOf(int length)
    {
        var (sliceOffset, sliceCount) = Partition.Slice(length, LocalSize, LocalRank);
        if (Ring is null)
        {
            return (sliceOffset, sliceCount);
        }

        var owned = RingSchedule.For(Ring.PeerCount, Ring.PeerIndex).OwnedSegment;
        var (offset, count) = Partition.Slice(sliceCount, Ring.PeerCount, owned);
        return (sliceOffset + offset, count);
    }

    /// <summary>Replaces <paramref name="buffer"/> with the element-wise sum of every rank's buffer; every rank ends bitwise equal.</summary>
    public SyncTimings AllReduce(Memory<float> buffer, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        using var linked = Link(cancellationToken);
        var token = linked.Token;
        long start = Stopwatch.GetTimestamp();
        IntraNode.ReduceScatter(LocalRank, buffer, token);
        double intraMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        double crossMs = RunRing(buffer, key, RingPhases.Both, token);
        start = Stopwatch.GetTimestamp();
        IntraNode.AllGather(LocalRank, buffer, token);
        intraMs += Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        return new SyncTimings(intraMs, crossMs);
    }

    /// <summary>
    /// <see cref="AllReduce(Memory{float}, CollectiveKey, CancellationToken)"/> of a bucket in device memory: the node's
    /// reduce-scatter and all-gather run on the device (<see cref="Device"/>), and only this trainer's slice of the
    /// node's sum, 1/local-size of the bucket, is copied to the host for the cross-node ring and back.
    /// </summary>
    public SyncTimings AllReduce(DeviceBuffer buffer, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        var device = Device ?? throw new InvalidOperationException(
            $"rank {Rank}: a device buffer needs the node's device collective, and this process group has none (intra-node {IntraNode.Name})");
        int length = checked((int)buffer.Count);
        using var linked = Link(cancellationToken);
        var token = linked.Token;
        long start = Stopwatch.GetTimestamp();
        device.IntraNode.ReduceScatter(LocalRank, buffer.Pointer, length, token);
        double intraMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        double crossMs = 0;
        if (Ring is not null)
        {
            var (offset, count) = Partition.Slice(length, LocalSize, LocalRank);
            var slice = buffer.Pointer + checked(offset * sizeof(float));
            var shard = new float[count];
            device.Memory.CopyToHost(slice, shard);
            crossMs = RunRingOnSlice(shard, key, RingPhases.Both, token);
            device.Memory.CopyToDevice(shard, slice);
        }

        start = Stopwatch.GetTimestamp();
        device.IntraNode.AllGather(LocalRank, buffer.Pointer, length, token);
        intraMs += Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        return new SyncTimings(intraMs, crossMs);
    }

    /// <summary>
    /// Leaves this rank's <see cref="ShardOf"/> part of <paramref name="buffer"/> holding the sum over all
    /// ranks; the rest of the buffer holds partial sums. <see cref="AllGather"/> with the same key completes it.
    /// </summary>
    public SyncTimings ReduceScatter(Memory<float> buffer, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        using var linked = Link(cancellationToken);
        long start = Stopwatch.GetTimestamp();
        IntraNode.ReduceScatter(LocalRank, buffer, linked.Token);
        double intraMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        return new SyncTimings(intraMs, RunRing(buffer, key, RingPhases.ReduceScatter, linked.Token));
    }

    /// <summary>Copies every rank's <see cref="ShardOf"/> part of its buffer into the same part of every other rank's buffer.</summary>
    public SyncTimings AllGather(Memory<float> buffer, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        using var linked = Link(cancellationToken);
        double crossMs = RunRing(buffer, key, RingPhases.AllGather, linked.Token);
        long start = Stopwatch.GetTimestamp();
        IntraNode.AllGather(LocalRank, buffer, linked.Token);
        return new SyncTimings(Stopwatch.GetElapsedTime(start).TotalMilliseconds, crossMs);
    }

    /// <summary>Makes every rank's <paramref name="buffer"/> equal to rank <paramref name="root"/>'s, bit for bit.</summary>
    public void Broadcast(Memory<float> buffer, int root, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        if ((uint)root >= (uint)WorldSize)
        {
            throw new ArgumentOutOfRangeException(nameof(root), root, $"The broadcast root must be a rank in 0..{WorldSize - 1}.");
        }

        using var linked = Link(cancellationToken);
        int rootNode = root / LocalSize;
        int rootLocal = root % LocalSize;
        if (Ring is not null && LocalRank == rootLocal)
        {
            // Only the local root's lane carries the data between nodes; the chain runs on this thread.
            ChainAsync(buffer, rootNode, Key(key, BroadcastKind, rootLocal), linked.Token).GetAwaiter().GetResult();
        }

        IntraNode.Broadcast(LocalRank, rootLocal, buffer, linked.Token);
    }

    /// <summary>
    /// Makes every rank's bytes equal to rank <paramref name="root"/>'s: packed four to a float, so they travel bit
    /// for bit. Every rank passes a buffer of the same length.
    /// </summary>
    public void Broadcast(Memory<byte> bytes, int root, CollectiveKey key, CancellationToken cancellationToken = default)
    {
        var packed = new float[(bytes.Length + sizeof(float) - 1) / sizeof(float)];
        var packedBytes = MemoryMarshal.AsBytes(packed.AsSpan());
        if (Rank == root)
        {
            bytes.Span.CopyTo(packedBytes);
        }

        Broadcast(packed, root, key, cancellationToken);
        packedBytes[..bytes.Length].CopyTo(bytes.Span);
    }

    /// <summary>Returns once every rank of the world has called it with the same key.</summary>
    public void Barrier(CollectiveKey key, CancellationToken cancellationToken = default)
    {
        // One value summed across the world: local rank 0's ring waits for every node, and the
        // intra-node all-gather holds the other local ranks until local rank 0 is back.
        using var linked = Link(cancellationToken);
        var token = new float[1];
        IntraNode.ReduceScatter(LocalRank, token, linked.Token);
        if (Ring is not null)
        {
            RingAllReduce.RunAsync(Ring, token, new RingCall(Key(key, BarrierKind, LocalRank)), linked.Token).GetAwaiter().GetResult();
        }

        IntraNode.AllGather(LocalRank, token, linked.Token);
    }

    private double RunRing(Memory<float> buffer, CollectiveKey key, RingPhases phases, CancellationToken token)
    {
        if (Ring is null)
        {
            return 0;
        }

        var (offset, count) = Partition.Slice(buffer.Length, LocalSize, LocalRank);
        return RunRingOnSlice(buffer.Slice(offset, count), key, phases, token);
    }

    /// <summary>The cross-node ring of this local rank on its slice; returns its wall time.</summary>
    private double RunRingOnSlice(Memory<float> slice, CollectiveKey key, RingPhases phases, CancellationToken token)
    {
        long start = Stopwatch.GetTimestamp();
        RingAllReduce.RunAsync(Ring!, slice, new RingCall(Key(key, AllReduceKind, LocalRank), Compression, phases), token).GetAwaiter().GetResult();
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    /// <summary>The root node sends every chunk to its right neighbour; each other node keeps it and passes it on, up to the root's left neighbour.</summary>
    private async Task ChainAsync(Memory<float> buffer, int rootNode, ChunkKey key, CancellationToken token)
    {
        var ring = Ring!;
        int node = ring.PeerIndex;
        int right = (node + 1) % ring.PeerCount;
        int left = (node + ring.PeerCount - 1) % ring.PeerCount;
        bool forwards = right != rootNode;
        int maxChunk = ring.MaxChunkElements;
        int chunks = (buffer.Length + maxChunk - 1) / maxChunk;
        for (int c = 0; c < chunks; c++)
        {
            var chunkKey = key with { Chunk = c };
            var target = buffer.Slice(c * maxChunk, Math.Min(maxChunk, buffer.Length - (c * maxChunk)));
            if (node != rootNode)
            {
                var incoming = await ring.ReceiveAsync(left, chunkKey, token).ConfigureAwait(false);
                try
                {
                    if (incoming.Length != target.Length)
                    {
                        throw new InvalidOperationException(
                            $"broadcast chunk {chunkKey} from node {left} has {incoming.Length} elements, expected {target.Length}; ranks disagree on the buffer length");
                    }

                    incoming.Span.CopyTo(target.Span);
                }
                finally
                {
                    ring.Release(incoming);
                }
            }

            if (node == rootNode || forwards)
            {
                await ring.SendAsync(right, chunkKey, target, token).ConfigureAwait(false);
            }
        }
    }

    private ChunkKey Key(CollectiveKey key, int operation, int lane)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(key.Bucket, "key.Bucket");
        return new ChunkKey(Generation.Id, key.Step, checked((key.Bucket * OperationKinds) + operation), lane, 0, 0);
    }

    private CancellationTokenSource Link(CancellationToken cancellationToken)
    {
        Generation.Cancelled.ThrowIfCancellationRequested();
        cancellationToken.ThrowIfCancellationRequested();
        return CancellationTokenSource.CreateLinkedTokenSource(Generation.Cancelled, cancellationToken);
    }
}

/// <summary>A generation of the world: its number (part of every chunk key) and the token that ends it.</summary>
internal readonly record struct GenerationScope(long Id, CancellationToken Cancelled);
