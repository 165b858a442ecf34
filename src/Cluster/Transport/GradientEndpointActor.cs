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
/// <para>
/// A chunk must come from the Akka address of the peer it names (senders send from their own
/// endpoint, see <see cref="AkkaRingTransport"/>); one from any other address is dropped as from
/// the wrong sender. A chunk of a generation this endpoint does not know yet (a neighbour started
/// it first) is held, with its sender's address, until <see cref="SetWorld"/> says who its peers
/// are; what it holds per peer is bounded like the mailbox.
/// </para>
/// </summary>
internal sealed class GradientEndpointActor : ReceiveActor
{
    public const string Name = "actortrain-endpoint";

    private readonly ChunkMailbox _mailbox;
    private readonly NodeMetrics? _metrics;
    private int _maxPayloadBytes;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private Address[] _peers = [];
    private long _generation;
    private readonly Address _selfAddress = ((ExtendedActorSystem)Context.System).Provider.DefaultAddress;
    private List<(GradientChunk Chunk, Address From)> _early = [];
    private readonly Dictionary<int, long> _earlyBytes = [];

    public GradientEndpointActor(ChunkMailbox mailbox, int chunkSizeBytes, NodeMetrics? metrics = null)
    {
        _mailbox = mailbox;
        _metrics = metrics;
        _maxPayloadBytes = chunkSizeBytes;
        Receive<GradientChunk>(OnChunk);
        Receive<GradientChunkSerializer.Refused>(r => Drop(r.Problem, DropReason.Malformed));
        Receive<SetWorld>(w =>
        {
            _peers = w.PeerAddresses.Select(Local).ToArray();
            if (w.MaxPayloadBytes > 0) _maxPayloadBytes = w.MaxPayloadBytes;
            _generation = w.Generation;
            _mailbox.DropGenerationsBefore(w.Generation);
            // Chunks that came before this world: checked now that its peers are known.
            var early = _early;
            _early = [];
            _earlyBytes.Clear();
            foreach (var (chunk, from) in early) Accept(chunk, from);
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

    /// <summary>A local address (a sender in this ActorSystem) as the node's own remote address, as the world names it.</summary>
    private Address Local(Address address) => address.HasLocalScope ? _selfAddress : address;

    private void OnChunk(GradientChunk chunk)
    {
        _metrics?.AddBytes(TransportLabel.Akka, sent: false, (long)chunk.Data.Length * sizeof(float));
        // No sender (or dead letters) is no peer: it would read as this node's own address.
        if (Sender.IsNobody())
        {
            Drop($"{chunk.Generation}/{chunk.Step}/{chunk.Bucket} claiming peer {chunk.FromPeer} without a sender", DropReason.WrongSender);
            return;
        }
        Accept(chunk, Local(Sender.Path.Address));
    }

    private void Accept(GradientChunk chunk, Address from)
    {
        var (problem, reason) = Validate(chunk);
        if (problem is not null)
        {
            Drop($"from {from} ({problem})", reason);
            return;
        }
        if (chunk.Generation > _generation)
        {
            // A peer can be one generation ahead (it set the next world up first), never more; and
            // only a cluster member can be a peer of the next world.
            if (chunk.Generation > _generation + 1)
                Drop($"from {from}: generation {chunk.Generation} while this node is in {_generation}", DropReason.FutureGeneration);
            else if (!IsClusterMember(from))
                Drop($"from {from}, which is not a member of the cluster, for generation {chunk.Generation}", DropReason.WrongSender);
            else
                Hold(chunk, from);
            return;
        }
        if (from != _peers[chunk.FromPeer])
        {
            Drop($"from {from} claiming peer {chunk.FromPeer}, whose address is {_peers[chunk.FromPeer]}", DropReason.WrongSender);
            return;
        }

        // The chunk's floats were read into an array of their own on arrival (or copied by a local
        // sender): the mailbox keeps that array, nothing is copied here.
        var key = new ChunkKey(chunk.Generation, chunk.Step, chunk.Bucket, chunk.Lane, chunk.RingStep, chunk.Chunk);
        var staleBefore = _mailbox.StaleDropped;
        var limitBefore = _mailbox.LimitDropped;
        if (_mailbox.Deliver(chunk.FromPeer, key, chunk.Data))
        {
            Received++;
            return;
        }
        if (_mailbox.LimitDropped > limitBefore)
            Drop($"{key} from peer {chunk.FromPeer}: it already has {_mailbox.PendingBytes(chunk.FromPeer)} bytes waiting (actortrain.sync.max-pending-chunk-bytes = {_mailbox.MaxPendingBytesPerPeer})", DropReason.PendingLimit);
        else
            Drop($"{key} from peer {chunk.FromPeer}: duplicate or stale", _mailbox.StaleDropped > staleBefore ? DropReason.Stale : DropReason.Duplicate);
    }

    /// <summary>
    /// Keeps a chunk of a generation not set up here yet, within the mailbox's bound per claimed peer
    /// and twice that in all: the peer indices of an unknown world are not known to be few (a ring
    /// node hears from its left neighbour only).
    /// </summary>
    private void Hold(GradientChunk chunk, Address from)
    {
        var bytes = (long)chunk.Data.Length * sizeof(float);
        var held = _earlyBytes.GetValueOrDefault(chunk.FromPeer);
        var total = _earlyBytes.Values.Sum();
        if (held + bytes > _mailbox.MaxPendingBytesPerPeer || total + bytes > 2 * Math.Min(_mailbox.MaxPendingBytesPerPeer, long.MaxValue / 4))
        {
            Drop($"of generation {chunk.Generation} from {from} claiming peer {chunk.FromPeer}: {held} bytes already wait for that generation (actortrain.sync.max-pending-chunk-bytes = {_mailbox.MaxPendingBytesPerPeer})", DropReason.PendingLimit);
            return;
        }
        _earlyBytes[chunk.FromPeer] = held + bytes;
        _early.Add((chunk, from));
    }

    /// <summary>Whether an address belongs to a member of this node's cluster (always true outside a cluster).</summary>
    private bool IsClusterMember(Address address)
    {
        if (address == ((ExtendedActorSystem)Context.System).Provider.DefaultAddress) return true;
        if (((ExtendedActorSystem)Context.System).Provider is not Akka.Cluster.ClusterActorRefProvider) return true;
        return Akka.Cluster.Cluster.Get(Context.System).State.Members.Any(m => m.Address == address);
    }

    private (string? Problem, string Reason) Validate(GradientChunk c)
    {
        if (c.Generation < _generation) return ($"stale generation {c.Generation}, current is {_generation}", DropReason.Stale);
        if (c.FromPeer < 0 || (c.Generation == _generation && c.FromPeer >= _peers.Length)) return ($"unknown peer index {c.FromPeer}", DropReason.UnknownPeer);
        if ((long)c.Data.Length * sizeof(float) > _maxPayloadBytes) return ($"payload of {(long)c.Data.Length * sizeof(float)} bytes exceeds the chunk size {_maxPayloadBytes}", DropReason.Oversized);
        if (c.Bucket < 0 || c.Lane < 0 || c.RingStep < 0 || c.Chunk < 0) return ("negative id", DropReason.Malformed);
        return (null, "");
    }

    /// <summary>
    /// Local: the world this endpoint now serves, with the Akka address of each peer's endpoint (by
    /// peer index, from <c>WorldNode.EndpointPath</c>); a positive MaxPayloadBytes replaces the chunk size.
    /// </summary>
    public sealed record SetWorld(long Generation, IReadOnlyList<Address> PeerAddresses, int MaxPayloadBytes = 0);

    public sealed class GetCounters
    {
        public static readonly GetCounters Instance = new();
        private GetCounters() { }
    }

    public sealed record Counters(long Received, long Dropped);
}
