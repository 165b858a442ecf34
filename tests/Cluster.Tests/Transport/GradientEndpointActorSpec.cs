using ActorTrain.Cluster.Protocol;
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

    private readonly ChunkMailbox _mailbox = new();
    private readonly IActorRef _endpoint;
    private readonly TestProbe _probe;

    public GradientEndpointActorSpec(LocalSystemFixture fixture)
    {
        // The fixture's system is shared; each test has its own endpoint and mailbox.
        _endpoint = fixture.System.ActorOf(Props(_mailbox, ChunkSizeBytes));
        _probe = new TestProbe(fixture.System, new XunitAssertions());
        _endpoint.Tell(new SetWorld(Generation, Peers));
    }

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
        var chunk = GradientChunkSerializer.Prepare(Generation, 5, 0, 0, 1, 0, 1, [4f, -0.5f]);

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

        Assert.Equal(new Counters(1, 0), CountersAfterSending(early));
        Assert.Equal(1, _mailbox.PendingCount);
        _endpoint.Tell(new SetWorld(Generation + 1, 5));
        Assert.Equal(new[] { 1.5f, -2f, 3.25f }, await ReceivedFloats(early));
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

        _endpoint.Tell(new SetWorld(Generation + 1, 2));
        var late = Chunk(chunk: 1);
        var fromNewWorld = Chunk(generation: Generation + 1, fromPeer: 1);

        Assert.Equal(new Counters(2, 1), CountersAfterSending(late, fromNewWorld));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await _mailbox.ReceiveAsync(pending.FromPeer, KeyOf(pending), CancellationToken.None));
        Assert.Equal(new[] { 1.5f, -2f, 3.25f }, await ReceivedFloats(fromNewWorld));
    }

    [Fact]
    public void Endpoint_must_refuse_senders_beyond_the_smaller_ring_of_a_new_world()
    {
        _endpoint.Tell(new SetWorld(Generation + 1, 2));

        Assert.Equal(new Counters(0, 1), CountersAfterSending(Chunk(generation: Generation + 1, fromPeer: 2)));
    }
}
