using System.Runtime.InteropServices;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.Cluster.Transport;
using ActorTrain.Sync.Ring;
using ActorTrain.Sync.Transport;
using Akka.Actor;
using static ActorTrain.Cluster.Transport.GradientEndpointActor;

namespace ActorTrain.Cluster.Tests.Transport;

/// <summary>Three remoting ActorSystems in this process, each with a gradient endpoint and a mailbox, as three nodes.</summary>
public sealed class RingOfSystems : IDisposable
{
    public const int Peers = 3;
    public const long Generation = 1;

    public RingOfSystems()
    {
        ChunkSizeBytes = ActorTrainSettings.Create(TestConfig.Remote()).Sync.ChunkSizeBytes;
        Systems = Enumerable.Range(0, Peers).Select(i => ActorSystem.Create($"ring-node-{i}", TestConfig.Remote())).ToArray();
        Mailboxes = Systems.Select(_ => new ChunkMailbox()).ToArray();
        LocalEndpoints = Systems.Select((s, i) => s.ActorOf(Props(Mailboxes[i], ChunkSizeBytes), Name)).ToArray();
        foreach (var endpoint in LocalEndpoints) endpoint.Tell(new SetWorld(Generation, Systems.Select(TestConfig.AddressOf).ToArray()));

        // What each node sees: the others' endpoints resolved over the network by their remote paths.
        Transports = Systems.Select((system, i) =>
        {
            var endpoints = Systems
                .Select(other => system.ActorSelection($"{TestConfig.AddressOf(other)}/user/{Name}").ResolveOne(TestConfig.Timeout).Result)
                .ToArray();
            return new AkkaRingTransport(i, endpoints, Mailboxes[i], ChunkSizeBytes);
        }).ToArray();
    }

    public int ChunkSizeBytes { get; }
    public ActorSystem[] Systems { get; }
    internal ChunkMailbox[] Mailboxes { get; }
    public IActorRef[] LocalEndpoints { get; }
    internal AkkaRingTransport[] Transports { get; }

    public void Dispose() => Task.WhenAll(Systems.Select(s => s.Terminate())).Wait(TestConfig.Timeout);
}

public class AkkaRingTransportSpec(RingOfSystems ring) : IClassFixture<RingOfSystems>
{
    private static float[] RandomFloats(int length, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    private static void AssertSumOfAll(float[][] inputs, float[][] outputs)
    {
        for (var p = 1; p < outputs.Length; p++)
            Assert.True(MemoryMarshal.AsBytes(outputs[0].AsSpan()).SequenceEqual(MemoryMarshal.AsBytes(outputs[p].AsSpan())), $"peer {p} differs bitwise from peer 0");
        for (var i = 0; i < outputs[0].Length; i++)
        {
            var expected = inputs.Sum(x => (double)x[i]);
            Assert.True(Math.Abs(expected - outputs[0][i]) <= 1e-5 * inputs.Length, $"element {i}: expected {expected}, got {outputs[0][i]}");
        }
    }

    /// <summary>Runs one all-reduce on every peer at once; returns each peer's result.</summary>
    private async Task<float[][]> AllReduce(float[][] inputs, long step, int bucket = 0)
    {
        var buffers = inputs.Select(x => x.ToArray()).ToArray();
        using var timeout = new CancellationTokenSource(TestConfig.Timeout);
        await Task.WhenAll(ring.Transports.Select((t, p) =>
            Task.Run(() => RingAllReduce.RunAsync(t, buffers[p], ChunkKey.Call(RingOfSystems.Generation, step, bucket, lane: 0), timeout.Token))));
        return buffers;
    }

    [Fact]
    public void Transport_must_size_chunks_to_the_configured_chunk_size()
    {
        Assert.All(ring.Transports, t => Assert.Equal(64 * 1024 / sizeof(float), t.MaxChunkElements));
        Assert.Equal([0, 1, 2], ring.Transports.Select(t => t.PeerIndex));
        Assert.All(ring.Transports, t => Assert.Equal(RingOfSystems.Peers, t.PeerCount));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AkkaRingTransport(3, ring.LocalEndpoints, ring.Mailboxes[0], ring.ChunkSizeBytes));
    }

    [Fact]
    public async Task Ring_all_reduce_over_remoting_must_leave_every_node_with_the_same_sum()
    {
        // Several chunks per segment: 50,000 floats over 3 peers is ~16,700 per segment, 16,384 per chunk.
        var inputs = Enumerable.Range(0, RingOfSystems.Peers).Select(p => RandomFloats(50_000, seed: 100 + p)).ToArray();

        // The endpoints are shared with the other tests of this class: compare with their counters before.
        var before = await Task.WhenAll(ring.LocalEndpoints.Select(e => e.Ask<Counters>(GetCounters.Instance, TestConfig.Timeout)));
        var outputs = await AllReduce(inputs, step: 1);

        AssertSumOfAll(inputs, outputs);
        for (var i = 0; i < before.Length; i++)
        {
            var counters = await ring.LocalEndpoints[i].Ask<Counters>(GetCounters.Instance, TestConfig.Timeout);
            Assert.True(counters.Received > before[i].Received, "no chunk crossed the network");
            Assert.Equal(before[i].Dropped, counters.Dropped);
        }
    }

    [Fact]
    public async Task A_chunk_must_cross_remoting_bit_for_bit_even_when_the_sender_reuses_its_buffer_at_once()
    {
        uint[] bits = [0x7fc00001, 0xffbadbad, 0x7f800001, 0x80000000, 0x00000001, 0x3fc00000];
        var buffer = MemoryMarshal.Cast<uint, float>(bits.AsSpan()).ToArray();
        var key = new ChunkKey(RingOfSystems.Generation, Step: 900, Bucket: 0, Lane: 0, RingStep: 0, Chunk: 0);
        using var timeout = new CancellationTokenSource(TestConfig.Timeout);

        await ring.Transports[0].SendAsync(1, key, buffer, timeout.Token);
        // IRingTransport lets the caller reuse its data as soon as the send returns.
        buffer.AsSpan().Fill(float.NaN);
        var received = await ring.Mailboxes[1].ReceiveAsync(0, key, timeout.Token);

        Assert.Equal(bits, MemoryMarshal.Cast<float, uint>(received.Span).ToArray());
    }

    [Fact]
    public async Task A_chunk_the_receiving_serializer_refuses_must_be_counted_and_must_not_cut_the_connection()
    {
        var remoteEndpoint = await ring.Systems[0].ActorSelection($"{TestConfig.AddressOf(ring.Systems[2])}/user/{Name}").ResolveOne(TestConfig.Timeout);
        var before = await ring.LocalEndpoints[2].Ask<Counters>(GetCounters.Instance, TestConfig.Timeout);
        var key = new ChunkKey(RingOfSystems.Generation, Step: 901, Bucket: 0, Lane: 0, RingStep: 0, Chunk: 0);
        using var timeout = new CancellationTokenSource(TestConfig.Timeout);

        // Written as given, refused on arrival: a negative lane never becomes a message.
        remoteEndpoint.Tell(new GradientChunk(RingOfSystems.Generation, 901, 0, -1, 0, 0, 0, new float[] { 1f }));
        await ring.Transports[0].SendAsync(2, key, new float[] { 2f }, timeout.Token);
        var received = await ring.Mailboxes[2].ReceiveAsync(0, key, timeout.Token);

        Assert.Equal([2f], received.ToArray());
        // The refusal reaches the endpoint through the event stream and is counted as a drop.
        var deadline = DateTime.UtcNow + TestConfig.Timeout;
        Counters after;
        while ((after = await ring.LocalEndpoints[2].Ask<Counters>(GetCounters.Instance, TestConfig.Timeout)).Dropped == before.Dropped
               && DateTime.UtcNow < deadline)
            await Task.Delay(20);
        Assert.Equal(before.Dropped + 1, after.Dropped);
        Assert.Equal(before.Received + 1, after.Received);
    }

    [Fact]
    public async Task Concurrent_all_reduces_of_other_steps_and_buckets_must_not_mix()
    {
        var runs = Enumerable.Range(0, 4)
            .Select(r => Enumerable.Range(0, RingOfSystems.Peers).Select(p => RandomFloats(20_000 + 1_000 * r, seed: 10 * r + p)).ToArray())
            .ToArray();

        var outputs = await Task.WhenAll(runs.Select((inputs, r) => AllReduce(inputs, step: 10 + r / 2, bucket: r % 2)));

        for (var r = 0; r < runs.Length; r++) AssertSumOfAll(runs[r], outputs[r]);
    }
}
