using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Serialization;
using ActorTrain.Sync.Transport;
using Akka.Actor;
using Akka.Event;

namespace ActorTrain.Cluster.Transport;

/// <summary>
/// Receives gradient chunks from other nodes and delivers them to the node's mailbox, where
/// the ring all-reduce of the matching key picks them up. Everything here arrives from the
/// network: chunks that are too large, from an unknown peer, with a negative id or of an old
/// generation are dropped, counted and logged; they never reach a reduction. Bytes that are no
/// chunk at all never become one: <see cref="Serialization.GradientChunkSerializer"/> refuses them,
/// Akka drops the message, and the refusal reaches this actor through the event stream to be
/// counted and logged as malformed.
/// </summary>
public sealed class GradientEndpointActor : ReceiveActor
{
    public const string Name = "actortrain-endpoint";

    private readonly ChunkMailbox _mailbox;
    private readonly NodeMetrics? _metrics;
    private int _maxPayloadBytes;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private int _peerCount;
    private long _generation;

    public GradientEndpointActor(ChunkMailbox mailbox, int chunkSizeBytes, NodeMetrics? metrics = null)
    {
        _mailbox = mailbox;
        _metrics = metrics;
        _maxPayloadBytes = chunkSizeBytes;
        Receive<GradientChunk>(OnChunk);
        Receive<GradientChunkSerializer.Refused>(r => Drop(r.Problem, DropReason.Malformed));
        Receive<SetWorld>(w =>
        {
            _peerCount = w.PeerCount;
            if (w.MaxPayloadBytes > 0) _maxPayloadBytes = w.MaxPayloadBytes;
            _generation = w.Generation;
            _mailbox.DropGenerationsBefore(w.Generation);
        });
        Receive<GetCounters>(_ => Sender.Tell(new Counters(Received, Dropped)));
    }

    public static Props Props(ChunkMailbox mailbox, int chunkSizeBytes, NodeMetrics? metrics = null) =>
        Akka.Actor.Props.Create(() => new GradientEndpointActor(mailbox, chunkSizeBytes, metrics));

    public long Received { get; private set; }
    public long Dropped { get; private set; }

    protected override void PreStart() => Context.System.EventStream.Subscribe(Self, typeof(GradientChunkSerializer.Refused));

    protected override void PostStop() => Context.System.EventStream.Unsubscribe(Self);

    private void Drop(string what, string reason)
    {
        Dropped++;
        _metrics?.Dropped(reason);
        // Log the first few and then every 1000th, so a flood cannot flood the log too.
        if (Dropped <= 10 || Dropped % 1000 == 0)
            _log.Warning("Dropped gradient chunk {0}; {1} dropped so far", what, Dropped);
    }

    private void OnChunk(GradientChunk chunk)
    {
        _metrics?.AddBytes(TransportLabel.Akka, sent: false, (long)chunk.Data.Length * sizeof(float));
        var (problem, reason) = Validate(chunk);
        if (problem is not null)
        {
            Drop($"from {Sender.Path.Address} ({problem})", reason);
            return;
        }

        // The chunk's floats were read into an array of their own on arrival (or copied by a local
        // sender): the mailbox keeps that array, nothing is copied here.
        var key = new ChunkKey(chunk.Generation, chunk.Step, chunk.Bucket, chunk.Lane, chunk.RingStep, chunk.Chunk);
        var staleBefore = _mailbox.StaleDropped;
        if (_mailbox.Deliver(chunk.FromPeer, key, chunk.Data))
        {
            Received++;
            return;
        }
        Drop($"{key} from peer {chunk.FromPeer}: duplicate or stale", _mailbox.StaleDropped > staleBefore ? DropReason.Stale : DropReason.Duplicate);
    }

    private (string? Problem, string Reason) Validate(GradientChunk c)
    {
        if (c.Generation < _generation) return ($"stale generation {c.Generation}, current is {_generation}", DropReason.Stale);
        if (c.FromPeer < 0 || (c.Generation == _generation && c.FromPeer >= _peerCount)) return ($"unknown peer index {c.FromPeer}", DropReason.UnknownPeer);
        if ((long)c.Data.Length * sizeof(float) > _maxPayloadBytes) return ($"payload of {(long)c.Data.Length * sizeof(float)} bytes exceeds the chunk size {_maxPayloadBytes}", DropReason.Oversized);
        if (c.Bucket < 0 || c.Lane < 0 || c.RingStep < 0 || c.Chunk < 0) return ("negative id", DropReason.Malformed);
        return (null, "");
    }

    /// <summary>Local: the world this endpoint now serves; a positive MaxPayloadBytes replaces the chunk size.</summary>
    public sealed record SetWorld(long Generation, int PeerCount, int MaxPayloadBytes = 0);

    public sealed class GetCounters
    {
        public static readonly GetCounters Instance = new();
        private GetCounters() { }
    }

    public sealed record Counters(long Received, long Dropped);
}
