using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Serialization;
using ActorTrain.Sync.Transport;
using Akka.Actor;

namespace ActorTrain.Cluster.Transport;

/// <summary>
/// Sync's ring transport over Akka remoting: a chunk is one <see cref="GradientChunk"/> message
/// from this node's ring position to a neighbour's <see cref="GradientEndpointActor"/>, which
/// hands it to that node's <see cref="ChunkMailbox"/>. Chunks stay below the remoting frame
/// size (actortrain.sync.chunk-size); <see cref="GradientChunkSerializer"/> puts their floats on
/// the wire as they are.
/// </summary>
internal sealed class AkkaRingTransport : IRingTransport
{
    private readonly IReadOnlyList<IActorRef> _endpoints;
    private readonly ChunkMailbox _mailbox;

    private readonly NodeMetrics? _metrics;

    public AkkaRingTransport(int peerIndex, IReadOnlyList<IActorRef> endpoints, ChunkMailbox mailbox, int chunkSizeBytes, NodeMetrics? metrics = null)
    {
        _metrics = metrics;
        if (peerIndex < 0 || peerIndex >= endpoints.Count) throw new ArgumentOutOfRangeException(nameof(peerIndex));
        PeerIndex = peerIndex;
        _endpoints = endpoints;
        _mailbox = mailbox;
        MaxChunkElements = Math.Max(1, chunkSizeBytes / sizeof(float));
    }

    public int PeerIndex { get; }
    public int PeerCount => _endpoints.Count;
    public int MaxChunkElements { get; }

    public ValueTask SendAsync(int peer, ChunkKey key, ReadOnlyMemory<float> data, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        // Tell returns before the message is serialized (or, to a local endpoint, delivered), and the
        // ring may overwrite its buffer once this returns: the message gets a copy of its own, made
        // straight in the form it goes on the wire in.
        var chunk = GradientChunkSerializer.Prepare(key, PeerIndex, data.Span);
        // Sent from this node's own endpoint: the receiver admits a chunk only from the address of the peer it names.
        _endpoints[peer].Tell(chunk, _endpoints[PeerIndex]);
        _metrics?.AddBytes(TransportLabel.Akka, sent: true, (long)data.Length * sizeof(float));
        return ValueTask.CompletedTask;
    }

    public ValueTask<ReadOnlyMemory<float>> ReceiveAsync(int peer, ChunkKey key, CancellationToken cancellationToken) =>
        _mailbox.ReceiveAsync(peer, key, cancellationToken);
}
