using System.Runtime.InteropServices;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Ring;
using ActorTrain.Sync.Transport;
using ActorTrain.Sync.Transport.Tcp;

namespace ActorTrain.Sync.Tests.Transport.Tcp;

/// <summary>Received chunks are read into pooled arrays that the ring hands back once merged.</summary>
public class TcpReceiveBufferPoolingTests
{
    private const int Length = 100_003;
    private const int ChunkElements = 16_384;

    // Two peers: segments of 50,002 and 50,001 floats, four chunks each, over two ring steps.
    private const int ChunksPerRun = 8;

    [Fact]
    public async Task Repeated_all_reduces_reuse_the_receive_arrays_and_still_sum_correctly()
    {
        await using var ring = await TcpTestRing.ConnectAsync(2, ChunkElements);
        const int runs = 6;
        for (int step = 1; step <= runs; step++)
        {
            var buffers = Enumerable.Range(0, 2).Select(p => TestData.RandomFloats(Length, seed: (p * 31) + step)).ToArray();
            var expected = TestData.ReferenceSum(buffers, Length);

            await TcpRingTransportTests.RunRing(ring.Peers, buffers, step);

            TestData.AssertCloseToReference(expected, buffers[0], 2);
            Assert.Equal(buffers[0], buffers[1]);
        }

        foreach (var peer in ring.Peers)
        {
            var pool = peer.ReceiveBuffers;
            Assert.Equal(runs * ChunksPerRun, pool.Rented);
            Assert.Equal(0, pool.Outstanding);

            // At most the chunks of two consecutive all-reduces are ever held at once; the rest are reused.
            Assert.InRange(pool.Allocated, 1, 2 * ChunksPerRun);
            Assert.Equal(0, peer.PendingChunks);
        }
    }

    [Theory]
    [InlineData(WireCompression.Fp16)]
    [InlineData(WireCompression.Bf16)]
    public async Task A_compressed_ring_over_tcp_gives_the_in_memory_result_and_releases_every_chunk(WireCompression format)
    {
        await using var ring = await TcpTestRing.ConnectAsync(3, ChunkElements);
        var inputs = Enumerable.Range(0, 3).Select(p => TestData.RandomFloats(Length, seed: p + 50)).ToArray();
        var overTcp = inputs.Select(b => (float[])b.Clone()).ToArray();
        var inMemory = inputs.Select(b => (float[])b.Clone()).ToArray();

        for (int step = 1; step <= 2; step++)
        {
            overTcp = inputs.Select(b => (float[])b.Clone()).ToArray();
            await RunRing(ring.Peers, overTcp, step, format);
        }

        await RunRing(InMemoryRingTransport.CreateRing(3, ChunkElements), inMemory, step: 1, format);

        Assert.All(overTcp, b => Assert.Equal(inMemory[0], b));
        Assert.All(ring.Peers, p => Assert.Equal(0, p.ReceiveBuffers.Outstanding));
        Assert.All(ring.Peers, p => Assert.True(p.ReceiveBuffers.Allocated < p.ReceiveBuffers.Rented));
    }

    [Fact]
    public async Task A_released_array_is_lent_again_and_keeps_the_exact_chunk_length()
    {
        await using var ring = await TcpTestRing.ConnectAsync(2, ChunkElements);
        var first = new ChunkKey(TcpTestRing.Generation, 1, 0, 0, 0, 0);
        var second = first with { Chunk = 1 };
        var peer = ring.Peers[1];

        await ring.Peers[0].SendAsync(1, first, new float[] { 1, 2, 3 }, CancellationToken.None);
        var a = await peer.ReceiveAsync(0, first, CancellationToken.None).AsTask().WaitAsync(TestData.Timeout);
        Assert.Equal([1f, 2f, 3f], a.ToArray());
        Assert.True(MemoryMarshal.TryGetArray(a, out var arrayA));
        peer.Release(a);

        await ring.Peers[0].SendAsync(1, second, new float[] { 4, 5 }, CancellationToken.None);
        var b = await peer.ReceiveAsync(0, second, CancellationToken.None).AsTask().WaitAsync(TestData.Timeout);
        Assert.Equal([4f, 5f], b.ToArray());
        Assert.True(MemoryMarshal.TryGetArray(b, out var arrayB));
        Assert.Same(arrayA.Array, arrayB.Array);
        peer.Release(b);

        Assert.Equal(2, peer.ReceiveBuffers.Rented);
        Assert.Equal(1, peer.ReceiveBuffers.Allocated);
    }

    [Fact]
    public async Task Releasing_a_chunk_twice_or_memory_the_transport_did_not_hand_out_throws()
    {
        await using var ring = await TcpTestRing.ConnectAsync(2, ChunkElements);
        var key = new ChunkKey(TcpTestRing.Generation, 1, 0, 0, 0, 0);
        await ring.Peers[0].SendAsync(1, key, new float[] { 1, 2, 3 }, CancellationToken.None);
        var chunk = await ring.Peers[1].ReceiveAsync(0, key, CancellationToken.None).AsTask().WaitAsync(TestData.Timeout);

        ring.Peers[1].Release(chunk);

        Assert.Throws<InvalidOperationException>(() => ring.Peers[1].Release(chunk));
        Assert.Throws<InvalidOperationException>(() => ring.Peers[1].Release(new float[3]));
        Assert.Throws<ArgumentException>(() => ring.Peers[1].Release(new float[3].AsMemory(1)));
        ring.Peers[1].Release(ReadOnlyMemory<float>.Empty);
        Assert.Equal(0, ring.Peers[1].ReceiveBuffers.Outstanding);
    }

    [Fact]
    public async Task Chunks_received_but_never_taken_go_back_to_the_pool_and_a_disposed_transport_hands_out_none()
    {
        var ring = await TcpTestRing.ConnectAsync(2, ChunkElements);
        var receiver = ring.Peers[1];
        var unclaimed = new ChunkKey(TcpTestRing.Generation, 99, 0, 0, 0, 0);

        await ring.Peers[0].SendAsync(1, unclaimed, new float[ChunkElements], CancellationToken.None);
        await ring.Peers[0].SendAsync(1, unclaimed, new float[ChunkElements], CancellationToken.None); // a duplicate: dropped
        await TcpTestRing.EventuallyAsync(() => receiver.DroppedFrames == 1, "the duplicate dropped");
        Assert.Equal(1, receiver.PendingChunks);
        Assert.Equal(1, receiver.ReceiveBuffers.Outstanding);

        await ring.DisposeAsync();

        Assert.Equal(0, receiver.PendingChunks);
        Assert.Equal(0, receiver.ReceiveBuffers.Outstanding);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => receiver.ReceiveAsync(0, unclaimed, CancellationToken.None).AsTask());
    }

    [Fact]
    public async Task A_chunk_taken_before_dispose_may_still_be_released_after()
    {
        var ring = await TcpTestRing.ConnectAsync(2, ChunkElements);
        var key = new ChunkKey(TcpTestRing.Generation, 1, 0, 0, 0, 0);
        await ring.Peers[0].SendAsync(1, key, new float[] { 7 }, CancellationToken.None);
        var chunk = await ring.Peers[1].ReceiveAsync(0, key, CancellationToken.None).AsTask().WaitAsync(TestData.Timeout);

        await ring.DisposeAsync();

        Assert.Equal([7f], chunk.ToArray());
        ring.Peers[1].Release(chunk);
        Assert.Equal(0, ring.Peers[1].ReceiveBuffers.Outstanding);
        Assert.Equal(1, ring.Peers[1].ReceiveBuffers.Dropped);
    }

    [Theory]
    [InlineData(20_480, 20_480, 20_480)]
    [InlineData(20_480, 20_000, 20_480)]
    [InlineData(20_480, 10_000, 16_384)]
    [InlineData(20_480, 1, 256)]
    [InlineData(100, 3, 100)]
    public void Arrays_come_in_powers_of_two_capped_at_the_largest_chunk(int maxChunk, int request, int arrayLength)
    {
        Assert.Equal(arrayLength, new ReceiveBufferPool(maxChunk).Rent(request).Length);
    }

    [Fact]
    public void An_array_of_one_size_is_never_lent_for_a_larger_request()
    {
        var pool = new ReceiveBufferPool(20_480);
        var small = pool.Rent(16_000);
        pool.Return(small);

        var large = pool.Rent(20_000);

        Assert.Equal(20_480, large.Length);
        Assert.Same(small, pool.Rent(16_000));
        Assert.Equal(2, pool.Allocated);
    }

    private static async Task RunRing(IReadOnlyList<IRingTransport> peers, float[][] buffers, long step, WireCompression format)
    {
        using var cts = new CancellationTokenSource(TestData.Timeout);
        var runs = peers.Select((t, p) => RingAllReduce.RunAsync(t, buffers[p], ChunkKey.Call(TcpTestRing.Generation, step, bucket: 0, lane: 0), cts.Token, format));
        await Task.WhenAll(runs).WaitAsync(TestData.Timeout);
    }
}
