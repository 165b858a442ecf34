using System.Collections.Concurrent;
using ActorTrain.Sync.Ring;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync.Tests.Ring;

public class RingAllReduceTests
{
    public static TheoryData<int, int, int> Cases()
    {
        var data = new TheoryData<int, int, int>();
        for (int n = 1; n <= 8; n++)
        {
            foreach (int length in new[] { 0, 1, n - 1, n + 1, 1000, 100_003 }.Distinct())
            {
                foreach (int chunk in new[] { 7, 1000 })
                {
                    data.Add(n, length, chunk);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Ring_all_reduce_sums_across_peers_and_leaves_them_bitwise_identical(int n, int length, int maxChunk)
    {
        var ring = InMemoryRingTransport.CreateRing(n, maxChunk);
        var buffers = Enumerable.Range(0, n).Select(p => TestData.RandomFloats(length, seed: (p * 31) + length)).ToArray();
        var expected = TestData.ReferenceSum(buffers, length);

        await RunRing(ring, buffers);

        TestData.AssertCloseToReference(expected, buffers[0], n);
        Assert.All(buffers, b => Assert.Equal(buffers[0], b));
        Assert.All(ring, t => Assert.Equal(0, ((InMemoryRingTransport)t).Mailbox.PendingCount));
    }

    [Fact]
    public async Task Chunks_never_exceed_the_transport_limit_and_empty_segments_send_nothing()
    {
        const int n = 4;
        var recorders = InMemoryRingTransport.CreateRing(n, maxChunkElements: 3).Select(t => new RecordingTransport(t)).ToArray();
        var buffers = Enumerable.Range(0, n).Select(p => TestData.RandomFloats(2, seed: p)).ToArray();

        await RunRing(recorders, buffers);

        // Length 2 over 4 peers: segments 0 and 1 hold one element each, 2 and 3 are empty.
        var all = recorders.SelectMany(r => r.Sent).ToArray();
        Assert.All(all, s => Assert.InRange(s.Length, 1, 3));
        Assert.Equal(2 * (n - 1) * 2, all.Length);
    }

    [Fact]
    public async Task Concurrent_all_reduces_on_one_ring_do_not_mix()
    {
        const int n = 3;
        var ring = InMemoryRingTransport.CreateRing(n, maxChunkElements: 50);
        var perBucket = Enumerable.Range(0, 4)
            .Select(bucket => Enumerable.Range(0, n).Select(p => TestData.RandomFloats(999, seed: (bucket * 10) + p)).ToArray())
            .ToArray();
        var expected = perBucket.Select(buffers => TestData.ReferenceSum(buffers, 999)).ToArray();

        var runs = perBucket.SelectMany((buffers, bucket) => Enumerable.Range(0, n).Select(p =>
            RingAllReduce.RunAsync(ring[p], buffers[p], ChunkKey.Call(generation: 1, step: 5, bucket, lane: 0), CancellationToken.None)));
        await Task.WhenAll(runs).WaitAsync(TestData.Timeout);

        for (int bucket = 0; bucket < perBucket.Length; bucket++)
        {
            TestData.AssertCloseToReference(expected[bucket], perBucket[bucket][0], n);
            Assert.All(perBucket[bucket], b => Assert.Equal(perBucket[bucket][0], b));
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(5)]
    public async Task Pipelining_does_not_deadlock_when_a_send_completes_only_once_it_is_received(int n)
    {
        var ring = RendezvousTransport.CreateRing(n, maxChunkElements: 16);
        var buffers = Enumerable.Range(0, n).Select(p => TestData.RandomFloats(5000, seed: p)).ToArray();
        var expected = TestData.ReferenceSum(buffers, 5000);

        await RunRing(ring, buffers);

        TestData.AssertCloseToReference(expected, buffers[0], n);
        Assert.All(buffers, b => Assert.Equal(buffers[0], b));
    }

    [Fact]
    public async Task A_missing_peer_ends_in_cancellation_not_a_hang()
    {
        var ring = InMemoryRingTransport.CreateRing(3, maxChunkElements: 10);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        // Peer 2 never takes part.
        var runs = Enumerable.Range(0, 2)
            .Select(p => RingAllReduce.RunAsync(ring[p], new float[100], ChunkKey.Call(1, 1, 0, 0), cts.Token))
            .ToArray();

        foreach (var run in runs)
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.WaitAsync(TestData.Timeout));
        }
    }

    [Fact]
    public async Task A_failing_transport_surfaces_its_error_instead_of_hanging()
    {
        var ring = InMemoryRingTransport.CreateRing(3, maxChunkElements: 10);
        var failing = new FailingTransport(ring[1], failAtRingStep: 2);
        using var cts = new CancellationTokenSource(TestData.Timeout);

        var run = RingAllReduce.RunAsync(failing, new float[100], ChunkKey.Call(1, 1, 0, 0), cts.Token);
        var others = new[] { 0, 2 }.Select(p => RingAllReduce.RunAsync(ring[p], new float[100], ChunkKey.Call(1, 1, 0, 0), cts.Token)).ToArray();

        var error = await Assert.ThrowsAsync<IOException>(() => run.WaitAsync(TestData.Timeout));
        Assert.Equal("link down", error.Message);
        cts.Cancel();
        foreach (var other in others)
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => other.WaitAsync(TestData.Timeout));
        }
    }

    [Fact]
    public async Task Peers_that_disagree_on_the_length_fail()
    {
        var ring = InMemoryRingTransport.CreateRing(2, maxChunkElements: 1000);
        using var cts = new CancellationTokenSource(TestData.Timeout);

        var runs = new[]
        {
            RingAllReduce.RunAsync(ring[0], new float[100], ChunkKey.Call(1, 1, 0, 0), cts.Token),
            RingAllReduce.RunAsync(ring[1], new float[120], ChunkKey.Call(1, 1, 0, 0), cts.Token),
        };

        await Assert.ThrowsAsync<InvalidOperationException>(() => runs[0].WaitAsync(TestData.Timeout));
        cts.Cancel();
        await Assert.ThrowsAnyAsync<Exception>(() => runs[1].WaitAsync(TestData.Timeout));
    }

    private static async Task RunRing(IReadOnlyList<IRingTransport> ring, float[][] buffers)
    {
        using var cts = new CancellationTokenSource(TestData.Timeout);
        var runs = ring.Select((transport, p) =>
            RingAllReduce.RunAsync(transport, buffers[p], ChunkKey.Call(generation: 3, step: 11, bucket: 2, lane: 0), cts.Token));
        await Task.WhenAll(runs).WaitAsync(TestData.Timeout);
    }

    /// <summary>Records the length of every chunk sent.</summary>
    private sealed class RecordingTransport(IRingTransport inner) : IRingTransport
    {
        public ConcurrentQueue<ReadOnlyMemory<float>> Sent { get; } = new();

        public int PeerIndex => inner.PeerIndex;

        public int PeerCount => inner.PeerCount;

        public int MaxChunkElements => inner.MaxChunkElements;

        public ValueTask SendAsync(int peer, ChunkKey key, ReadOnlyMemory<float> data, CancellationToken cancellationToken)
        {
            Sent.Enqueue(data.ToArray());
            return inner.SendAsync(peer, key, data, cancellationToken);
        }

        public ValueTask<ReadOnlyMemory<float>> ReceiveAsync(int peer, ChunkKey key, CancellationToken cancellationToken) =>
            inner.ReceiveAsync(peer, key, cancellationToken);
    }

    /// <summary>Throws on the first send of a given ring step, like a connection that drops mid-reduction.</summary>
    private sealed class FailingTransport(IRingTransport inner, int failAtRingStep) : IRingTransport
    {
        public int PeerIndex => inner.PeerIndex;

        public int PeerCount => inner.PeerCount;

        public int MaxChunkElements => inner.MaxChunkElements;

        public ValueTask SendAsync(int peer, ChunkKey key, ReadOnlyMemory<float> data, CancellationToken cancellationToken) =>
            key.RingStep == failAtRingStep
                ? ValueTask.FromException(new IOException("link down"))
                : inner.SendAsync(peer, key, data, cancellationToken);

        public ValueTask<ReadOnlyMemory<float>> ReceiveAsync(int peer, ChunkKey key, CancellationToken cancellationToken) =>
            inner.ReceiveAsync(peer, key, cancellationToken);
    }

    /// <summary>
    /// A transport without buffering: a send completes only after the receiver has taken the chunk.
    /// An all-reduce that sent a whole step before receiving would deadlock on it.
    /// </summary>
    private sealed class RendezvousTransport : IRingTransport
    {
        private readonly RendezvousTransport[] ring;
        private readonly ChunkMailbox mailbox = new();
        private readonly ConcurrentDictionary<(int From, ChunkKey Key), TaskCompletionSource> taken = new();

        private RendezvousTransport(RendezvousTransport[] ring, int peerIndex, int maxChunkElements)
        {
            this.ring = ring;
            PeerIndex = peerIndex;
            MaxChunkElements = maxChunkElements;
        }

        public int PeerIndex { get; }

        public int PeerCount => ring.Length;

        public int MaxChunkElements { get; }

        public static IRingTransport[] CreateRing(int n, int maxChunkElements)
        {
            var ring = new RendezvousTransport[n];
            for (int i = 0; i < n; i++)
            {
                ring[i] = new RendezvousTransport(ring, i, maxChunkElements);
            }

            return [.. ring];
        }

        public async ValueTask SendAsync(int peer, ChunkKey key, ReadOnlyMemory<float> data, CancellationToken cancellationToken)
        {
            var receiver = ring[peer];
            var signal = receiver.TakenSignal(PeerIndex, key);
            receiver.mailbox.Deliver(PeerIndex, key, data.ToArray());
            await signal.Task.WaitAsync(cancellationToken);
        }

        public async ValueTask<ReadOnlyMemory<float>> ReceiveAsync(int peer, ChunkKey key, CancellationToken cancellationToken)
        {
            var data = await mailbox.ReceiveAsync(peer, key, cancellationToken);
            TakenSignal(peer, key).TrySetResult();
            return data;
        }

        private TaskCompletionSource TakenSignal(int from, ChunkKey key) =>
            taken.GetOrAdd((from, key), _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
    }
}
