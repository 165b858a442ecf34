using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Tests.Metrics;
using ActorTrain.Cluster.Serialization;
using ActorTrain.Cluster.Transport;
using ActorTrain.Sync.Transport;
using Akka.Actor;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using static ActorTrain.Cluster.Transport.GradientEndpointActor;

namespace ActorTrain.Cluster.Tests.Transport;

public class GradientEndpointActorSpec : IClassFixture<LocalSystemFixture>
{
    private const int ChunkSizeBytes = 1024;
    private const long Generation = 2;
    private const int Peers = 3;

    /// <summary>Bound of the held chunks per peer: two chunks of the chunk size.</summary>
    private const long MaxPendingBytes = 2 * ChunkSizeBytes;

    /// <summary>An address no test sends from: the peer that lives elsewhere.</summary>
    private static readonly Address Elsewhere = Address.Parse("akka.tcp://actortrain@10.0.0.9:4053");

    private readonly ChunkMailbox _mailbox = new(MaxPendingBytes);
    private readonly NodeMetrics _metrics = new("node-0");
    private readonly IActorRef _endpoint;
    private readonly TestProbe _probe;
    private readonly Address _here;

    public GradientEndpointActorSpec(LocalSystemFixture fixture)
    {
        // The fixture's system is shared; each test has its own endpoint and mailbox.
        _endpoint = fixture.System.ActorOf(Props(_mailbox, ChunkSizeBytes, _metrics));
        _probe = new TestProbe(fixture.System, new XunitAssertions());
        _here = TestConfig.AddressOf(fixture.System);
        _endpoint.Tell(World(Generation, Peers));
    }

    /// <summary>A world whose peers all send from this system (the test probe), except <paramref name="elsewhere"/>.</summary>
    private SetWorld World(long generation, int peers, int elsewhere = -1) =>
        new(generation, Enumerable.Range(0, peers).Select(p => p == elsewhere ? Elsewhere : _here).ToArray());

    private double DroppedFor(string reason) =>
        Exposition.Parse(_metrics.RenderAsync().Result).Value("actortrain_dropped_messages_total", ("reason", reason));

    private static GradientChunk Chunk(long generation = Generation, int fromPeer = 1, float[]? data = null, long step = 5, int bucket = 0, int lane = 0, int ringStep = 1, int chunk = 0) =>
        new(generation, step, bucket, lane, ringStep, chunk, fromPeer, data ?? [1.5f, -2f, 3.25f]);

    private static ChunkKey KeyOf(GradientChunk c) => new(c.Generation, c.Step, c.Bucket, c.Lane, c.RingStep, c.Chunk);

    /// <summary>Messages from one sender are processed in order: the answer comes after every chunk sent before it.</summary>
    private Counters CountersAfterSending(params GradientChunk[] chunks)
    {
        foreach (var c in chunks) _endpoint.Tell(c, _probe.Ref);
        _endpoint.Tell(GetCounters.Instance, _probe.Ref);
        return _probe.ExpectMsg<Counters>(TestConfig.Timeout);
    }

    private async Task<float[]> ReceivedFloats(GradientChunk c)
    {
        using var timeout = new CancellationTokenSource(TestConfig.Timeout);
        return (await _mailbox.ReceiveAsync(c.FromPeer, KeyOf(c), timeout.Token)).ToArray();
    }

    private async Task AssertNeverDelivered(GradientChunk c)
    {
        Assert.Equal(0, _mailbox.PendingCount);
        var receive = _mailbox.ReceiveAsync(c.FromPeer, KeyOf(c), CancellationToken.None).AsTask();
        await Task.WhenAny(receive, Task.Delay(TestConfig.Quiet));
        // A receive of a generation the mailbox has left fails at once; any other stays pending.
        Assert.False(receive.IsCompletedSuccessfully, $"chunk {KeyOf(c)} from peer {c.FromPeer} reached the mailbox");
    }

    [Fact]
    public void Endpoint_must_count_a_chunk_the_serializer_refused_as_a_drop()
    {
        // Answered once: the endpoint has started and subscribed to the event stream.
        var before = CountersAfterSending();

        _endpoint.Tell(new GradientChunkSerializer.Refused("bad magic"));
        _probe.Sys.EventStream.Publish(new GradientChunkSerializer.Refused("negative lane -1"));

        var after = CountersAfterSending();
        Assert.Equal(before.Dropped + 2, after.Dropped);
        Assert.Equal(before.Received, after.Received);
    }

    [Fact]
    public async Task Endpoint_must_deliver_a_valid_chunk_to_the_mailbox()
    {
        var chunk = Chunk();

        Assert.Equal(new Counters(1, 0), CountersAfterSending(chunk));
        Assert.Equal(new[] { 1.5f, -2f, 3.25f }, await ReceivedFloats(chunk));
    }

    [Fact]
    public async Task Endpoint_must_deliver_a_chunk_of_exactly_the_chunk_size_and_of_a_negative_broadcast_step()
    {
        var full = Chunk(data: Enumerable.Range(0, ChunkSizeBytes / 4).Select(i => (float)i).ToArray());
        var broadcast = Chunk(step: -1, fromPeer: 2, data: [7f]);

        Assert.Equal(new Counters(2, 0), CountersAfterSending(full, broadcast));
        Assert.Equal(Enumerable.Range(0, ChunkSizeBytes / 4).Select(i => (float)i), await ReceivedFloats(full));
        Assert.Equal(new[] { 7f }, await ReceivedFloats(broadcast));
    }

    [Fact]
    public async Task Endpoint_must_deliver_a_chunk_sent_in_its_wire_form_without_remoting()
    {
        // What AkkaRingTransport sends; delivered locally it is never serialized, and its floats are read from the wire bytes.
        var chunk = GradientChunkSerializer.Prepare(new ChunkKey(Generation, 5, 0, 0, 1, 0), 1, [4f, -0.5f]);

        Assert.Equal(new Counters(1, 0), CountersAfterSending(chunk));
        Assert.Equal(new[] { 4f, -0.5f }, await ReceivedFloats(chunk));
    }

    public static TheoryData<string> InvalidChunks => new(Invalid.Keys);

    private static readonly Dictionary<string, GradientChunk> Invalid = new()
    {
        ["payload larger than the chunk size"] = Chunk(data: new float[ChunkSizeBytes / 4 + 1]),
        ["sender beyond the ring"] = Chunk(fromPeer: Peers),
        ["negative sender"] = Chunk(fromPeer: -1),
        ["negative bucket"] = Chunk(bucket: -1),
        ["negative lane"] = Chunk(lane: -1),
        ["negative ring step"] = Chunk(ringStep: -1),
        ["negative chunk index"] = Chunk(chunk: -1),
        ["older generation"] = Chunk(generation: Generation - 1),
        ["negative generation"] = Chunk(generation: -1),
    };

    [Theory]
    [MemberData(nameof(InvalidChunks))]
    public async Task Endpoint_must_drop_count_and_never_deliver_an_invalid_chunk(string problem)
    {
        var chunk = Invalid[problem];

        Assert.Equal(new Counters(0, 1), CountersAfterSending(chunk));
        await AssertNeverDelivered(chunk);
    }

    [Fact]
    public async Task Endpoint_must_hold_a_chunk_of_a_future_generation_for_its_receive()
    {
        // Peers may enter the next world and send before this node has processed it.
        var early = Chunk(generation: Generation + 1, fromPeer: 4);

        // Held by the endpoint until it knows the new world's peers, then checked and delivered.
        Assert.Equal(new Counters(0, 0), CountersAfterSending(early));
        Assert.Equal(0, _mailbox.PendingCount);
        _endpoint.Tell(World(Generation + 1, 5));
        Assert.Equal(new[] { 1.5f, -2f, 3.25f }, await ReceivedFloats(early));
        Assert.Equal(new Counters(1, 0), CountersAfterSending());
    }

    [Fact]
    public async Task Endpoint_must_drop_and_count_a_chunk_from_an_address_other_than_the_peer_it_names()
    {
        _endpoint.Tell(World(Generation, Peers, elsewhere: 1));
        var forged = Chunk(fromPeer: 1);

        Assert.Equal(new Counters(0, 1), CountersAfterSending(forged));
        await AssertNeverDelivered(forged);
        Assert.Equal(1, DroppedFor(DropReason.WrongSender));
    }

    [Fact]
    public async Task Endpoint_must_drop_a_chunk_without_a_sender()
    {
        var anonymous = Chunk();
        _endpoint.Tell(anonymous, ActorRefs.NoSender);

        Assert.Equal(new Counters(0, 1), CountersAfterSending());
        await AssertNeverDelivered(anonymous);
        Assert.Equal(1, DroppedFor(DropReason.WrongSender));
    }

    [Fact]
    public async Task Endpoint_must_drop_a_held_future_chunk_whose_sender_is_not_the_peer_of_the_new_world()
    {
        var early = Chunk(generation: Generation + 1, fromPeer: 0);
        Assert.Equal(new Counters(0, 0), CountersAfterSending(early));

        _endpoint.Tell(World(Generation + 1, 2, elsewhere: 0));

        Assert.Equal(new Counters(0, 1), CountersAfterSending());
        await AssertNeverDelivered(early);
        Assert.Equal(1, DroppedFor(DropReason.WrongSender));
    }

    [Fact]
    public void Endpoint_must_keep_the_bytes_held_for_a_peer_within_the_bound_under_a_flood()
    {
        // Chunks of keys no reduction asks for (yet): the mailbox holds them only up to its bound per peer.
        // 8 chunks of 64 floats fill the bound.
        var flood = Enumerable.Range(0, 100).Select(i => Chunk(fromPeer: 1, step: 1000 + i, data: new float[64])).ToArray();
        var other = Chunk(fromPeer: 2);

        var counters = CountersAfterSending([.. flood, other]);

        Assert.Equal(8 + 1, counters.Received);
        Assert.Equal(100 - 8, counters.Dropped);
        Assert.Equal(MaxPendingBytes, _mailbox.PendingBytes(1));
        Assert.True(_mailbox.PendingBytes(2) > 0, "another peer's chunk is still taken");
        Assert.Equal(100 - 8, DroppedFor(DropReason.PendingLimit));

        // Chunks of a world not set up yet are held by the endpoint within the same bound.
        var early = Enumerable.Range(0, 100).Select(i => Chunk(generation: Generation + 1, fromPeer: 1, step: i, data: new float[64])).ToArray();
        var after = CountersAfterSending(early);
        Assert.Equal(counters.Dropped + 100 - 8, after.Dropped);
        // Claiming many peers of the unknown world does not multiply the bound: twice it in all.
        var spread = Enumerable.Range(0, 100).Select(i => Chunk(generation: Generation + 1, fromPeer: 10 + i, step: i, data: new float[64])).ToArray();
        Assert.Equal(after.Dropped + 100 - 8, CountersAfterSending(spread).Dropped);
    }

    [Fact]
    public async Task Endpoint_must_drop_a_duplicate_and_keep_the_first_copy()
    {
        var first = Chunk(data: [1f]);
        var again = Chunk(data: [2f]);

        Assert.Equal(new Counters(1, 1), CountersAfterSending(first, again));
        Assert.Equal(new[] { 1f }, await ReceivedFloats(first));
    }

    [Fact]
    public async Task Endpoint_must_discard_the_old_generation_when_the_world_changes()
    {
        var pending = Chunk();
        Assert.Equal(new Counters(1, 0), CountersAfterSending(pending));

        _endpoint.Tell(World(Generation + 1, 2));
        var late = Chunk(chunk: 1);
        var fromNewWorld = Chunk(generation: Generation + 1, fromPeer: 1);

        Assert.Equal(new Counters(2, 1), CountersAfterSending(late, fromNewWorld));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await _mailbox.ReceiveAsync(pending.FromPeer, KeyOf(pending), CancellationToken.None));
        Assert.Equal(new[] { 1.5f, -2f, 3.25f }, await ReceivedFloats(fromNewWorld));
    }

    [Fact]
    public void Endpoint_must_refuse_senders_beyond_the_smaller_ring_of_a_new_world()
    {
        _endpoint.Tell(World(Generation + 1, 2));

        Assert.Equal(new Counters(0, 1), CountersAfterSending(Chunk(generation: Generation + 1, fromPeer: 2)));
    }
}
