namespace ActorTrain.Sync.Transport;

/// <summary>
/// Ring peers in one process, connected through <see cref="ChunkMailbox"/>es. Sending copies the
/// data, so the sender may reuse its buffer as soon as the send returns, as with a real network.
/// Used by tests and by the single-node path of the framework.
/// </summary>
internal sealed class InMemoryRingTransport : IRingTransport
{
    private readonly InMemoryRingTransport[] ring;

    private InMemoryRingTransport(InMemoryRingTransport[] ring, int peerIndex, int maxChunkElements)
    {
        this.ring = ring;
        PeerIndex = peerIndex;
        MaxChunkElements = maxChunkElements;
    }

    /// <inheritdoc />
    public int PeerIndex { get; }

    /// <inheritdoc />
    public int PeerCount => ring.Length;

    /// <inheritdoc />
    public int MaxChunkElements { get; }

    /// <summary>The chunks other peers sent to this one.</summary>
    public ChunkMailbox Mailbox { get; } = new();

    /// <summary>Creates <paramref name="peerCount"/> connected peers; element i is peer i.</summary>
    public static IRingTransport[] CreateRing(int peerCount, int maxChunkElements)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(peerCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxChunkElements);
        var ring = new InMemoryRingTransport[peerCount];
        for (int i = 0; i < peerCount; i++)
        {
            ring[i] = new InMemoryRingTransport(ring, i, maxChunkElements);
        }

        return [.. ring];
    }

    /// <inheritdoc />
    public ValueTask SendAsync(int peer, ChunkKey key, ReadOnlyMemory<float> data, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        RequirePeer(peer);
        if (data.Length > MaxChunkElements)
        {
            throw new ArgumentException(
                $"Chunk {key} has {data.Length} elements; this transport carries at most {MaxChunkElements}.", nameof(data));
        }

        ring[peer].Mailbox.Deliver(PeerIndex, key, data.ToArray());
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<ReadOnlyMemory<float>> ReceiveAsync(int peer, ChunkKey key, CancellationToken cancellationToken)
    {
        RequirePeer(peer);
        return Mailbox.ReceiveAsync(peer, key, cancellationToken);
    }

    private void RequirePeer(int peer)
    {
        if ((uint)peer >= (uint)ring.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(peer), peer, $"Peer must be in 0..{ring.Length - 1}.");
        }
    }
}
