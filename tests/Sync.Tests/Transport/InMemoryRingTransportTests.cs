using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync.Tests.Transport;

public class InMemoryRingTransportTests
{
    private static readonly ChunkKey Key = new(1, 1, 0, 0, 0, 0);

    [Fact]
    public void Peers_are_numbered_in_ring_order()
    {
        var ring = InMemoryRingTransport.CreateRing(4, maxChunkElements: 16);

        Assert.Equal([0, 1, 2, 3], ring.Select(t => t.PeerIndex));
        Assert.All(ring, t => Assert.Equal(4, t.PeerCount));
        Assert.All(ring, t => Assert.Equal(16, t.MaxChunkElements));
    }

    [Fact]
    public async Task Sending_copies_the_data_so_the_sender_may_reuse_its_buffer()
    {
        var ring = InMemoryRingTransport.CreateRing(2, maxChunkElements: 16);
        var buffer = new float[] { 1, 2, 3 };

        await ring[0].SendAsync(1, Key, buffer, CancellationToken.None);
        buffer[0] = 99;
        var received = await ring[1].ReceiveAsync(0, Key, CancellationToken.None);

        Assert.Equal([1f, 2f, 3f], received.ToArray());
    }

    [Fact]
    public async Task Oversized_chunks_and_unknown_peers_are_rejected()
    {
        var ring = InMemoryRingTransport.CreateRing(2, maxChunkElements: 2);

        await Assert.ThrowsAsync<ArgumentException>(() => ring[0].SendAsync(1, Key, new float[3], CancellationToken.None).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ring[0].SendAsync(2, Key, new float[1], CancellationToken.None).AsTask());
        Assert.Throws<ArgumentOutOfRangeException>(() => ring[0].ReceiveAsync(-1, Key, CancellationToken.None));
    }

    [Fact]
    public void Invalid_rings_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => InMemoryRingTransport.CreateRing(0, 16));
        Assert.Throws<ArgumentOutOfRangeException>(() => InMemoryRingTransport.CreateRing(2, 0));
    }
}
