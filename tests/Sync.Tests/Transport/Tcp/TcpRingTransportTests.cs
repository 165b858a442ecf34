using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using ActorTrain.Sync.Ring;
using ActorTrain.Sync.Transport;
using ActorTrain.Sync.Transport.Tcp;

namespace ActorTrain.Sync.Tests.Transport.Tcp;

public class TcpRingTransportTests
{
    private const int Length = 100_003;
    private const int ChunkElements = 16_384;

    [Theory]
    [InlineData(2, Length, ChunkElements)]
    [InlineData(3, Length, ChunkElements)]
    [InlineData(4, Length, ChunkElements)]
    [InlineData(2, 300_007, 70_000)] // 280 KB chunks: sent from the caller's memory instead of copied behind the header
    public async Task Ring_all_reduce_over_tcp_sums_across_peers_and_leaves_them_bitwise_identical(int n, int length, int maxChunk)
    {
        await using var ring = await TcpTestRing.ConnectAsync(n, maxChunk);
        var buffers = Enumerable.Range(0, n).Select(p => TestData.RandomFloats(length, seed: (p * 17) + n)).ToArray();
        var expected = TestData.ReferenceSum(buffers, length);

        await RunRing(ring.Peers, buffers, step: 1);

        TestData.AssertCloseToReference(expected, buffers[0], n);
        Assert.All(buffers, b => Assert.Equal(buffers[0], b));
        Assert.All(ring.Peers, p => Assert.Equal(0, p.PendingChunks));
        Assert.All(ring.Peers, p => Assert.Equal(0, p.DroppedFrames));
    }

    [Theory]
    [InlineData("10.0.0.5", "10.0.0.5", true)]
    [InlineData("10.0.0.5", "10.0.0.6", false)]
    [InlineData("10.0.0.5", "::ffff:10.0.0.5", true)]
    [InlineData("127.0.0.1", "127.0.0.2", true)]
    [InlineData("127.0.0.1", "::1", true)]
    [InlineData("127.0.0.1", "10.0.0.5", false)]
    [InlineData("10.0.0.5", "127.0.0.1", false)]
    [InlineData("0.0.0.0", "10.0.0.9", true)]
    public void A_connection_is_admitted_only_from_the_left_neighbours_host(string expected, string actual, bool admitted)
    {
        Assert.Equal(admitted, TcpRingTransport.FromHost(System.Net.IPAddress.Parse(expected), System.Net.IPAddress.Parse(actual)));
        Assert.False(TcpRingTransport.FromHost(System.Net.IPAddress.Parse(expected), null));
    }

    [Fact]
    public async Task Byte_counters_match_on_both_ends_of_every_connection()
    {
        await using var ring = await TcpTestRing.ConnectAsync(3, ChunkElements);
        var buffers = Enumerable.Range(0, 3).Select(p => TestData.RandomFloats(Length, seed: p)).ToArray();

        await RunRing(ring.Peers, buffers, step: 1);

        foreach (var peer in ring.Peers)
        {
            Assert.Equal(ExpectedFrameBytes(peer), peer.BytesSent);
            Assert.Equal(peer.BytesSent, ring.Peers[peer.RightNeighbour].BytesReceived);
        }
    }

    [Fact]
    public async Task A_connection_with_a_wrong_token_is_refused_and_counted_while_the_ring_still_works()
    {
        await using var ring = await TcpTestRing.ConnectAsync(3, ChunkElements);
        var target = ring.Peers[1];
        var wrongToken = TcpTestRing.Token.Select(b => (byte)~b).ToArray();

        var refused = await Assert.ThrowsAsync<TcpHandshakeRefusedException>(
            () => TcpTestRing.HandshakeAsync(target.ListenEndPoint, TcpTestRing.Generation, claimedPeer: 0, wrongToken));

        Assert.Equal(TcpRefusalReason.WrongToken, refused.Reason);
        Assert.Equal(1, target.RejectedConnections);
        await AssertRingWorks(ring, step: 2);
    }

    [Theory]
    [InlineData(TcpTestRing.Generation + 1, 0, TcpRefusalReason.WrongGeneration)]
    [InlineData(TcpTestRing.Generation, 2, TcpRefusalReason.UnexpectedPeer)]
    [InlineData(TcpTestRing.Generation, 0, TcpRefusalReason.AlreadyConnected)]
    public async Task Handshakes_from_another_generation_a_non_neighbour_or_a_second_left_neighbour_are_refused(
        long generation, int claimedPeer, TcpRefusalReason reason)
    {
        await using var ring = await TcpTestRing.ConnectAsync(3, ChunkElements);
        var target = ring.Peers[1];

        var refused = await Assert.ThrowsAsync<TcpHandshakeRefusedException>(
            () => TcpTestRing.HandshakeAsync(target.ListenEndPoint, generation, claimedPeer, TcpTestRing.Token));

        Assert.Equal(reason, refused.Reason);
        Assert.Equal(1, target.RejectedConnections);
        await AssertRingWorks(ring, step: 2);
    }

    [Fact]
    public async Task Garbage_sent_to_a_listener_is_rejected_without_crashing()
    {
        await using var ring = await TcpTestRing.ConnectAsync(2, ChunkElements);
        var target = ring.Peers[0];
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(target.ListenEndPoint);
        var garbage = new byte[512];
        new Random(3).NextBytes(garbage);

        await socket.SendAsync(garbage, SocketFlags.None);

        await TcpTestRing.AssertClosedByPeerAsync(socket);
        await TcpTestRing.EventuallyAsync(() => target.RejectedConnections == 1, "the garbage connection is counted");
        Assert.Contains("magic", target.LastRejection);
        await AssertRingWorks(ring, step: 2);
    }

    [Fact]
    public async Task A_connection_closed_part_way_through_the_handshake_is_rejected()
    {
        await using var ring = await TcpTestRing.ConnectAsync(2, ChunkElements);
        var target = ring.Peers[1];
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(target.ListenEndPoint);
            await socket.SendAsync(new byte[] { 0x41, 0x54, 0x52 }, SocketFlags.None);
        }

        await TcpTestRing.EventuallyAsync(() => target.RejectedConnections == 1, "the cut-off handshake is counted");
        await AssertRingWorks(ring, step: 2);
    }

    public static TheoryData<string> MalformedHeaders() => ["element count too large", "negative element count", "bad magic", "other generation", "ring step out of range"];

    [Theory]
    [MemberData(nameof(MalformedHeaders))]
    public async Task A_malformed_frame_closes_the_connection_and_fails_a_waiting_receive(string defect)
    {
        const int maxChunk = 1024;
        await using var fake = await FakeLeftNeighbour.ConnectAsync(maxChunk);
        var key = new ChunkKey(TcpTestRing.Generation, Step: 1, Bucket: 0, Lane: 0, RingStep: 0, Chunk: 0);
        using var cts = new CancellationTokenSource(TestData.Timeout);
        var waiting = fake.Transport.ReceiveAsync(0, key, cts.Token).AsTask();

        var header = new byte[TcpWireFormat.FrameHeaderSize];
        TcpWireFormat.WriteFrameHeader(header, key, 4);
        switch (defect)
        {
            case "element count too large": BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(4), maxChunk + 1); break;
            case "negative element count": BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(4), -1); break;
            case "bad magic": header[0] ^= 0xff; break;
            case "other generation": BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(8), TcpTestRing.Generation + 1); break;
            case "ring step out of range": BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(32), 2); break;
        }

        await fake.ToTransport.SendAsync(header, SocketFlags.None);

        var failure = await Assert.ThrowsAsync<IOException>(() => waiting.WaitAsync(TestData.Timeout));
        Assert.IsType<InvalidDataException>(failure.InnerException);
        Assert.Equal(1, fake.Transport.DroppedFrames);
        await TcpTestRing.AssertClosedByPeerAsync(fake.ToTransport);
        await Assert.ThrowsAsync<IOException>(() => fake.Transport.ReceiveAsync(0, key with { Chunk = 1 }, cts.Token).AsTask());
    }

    [Fact]
    public async Task A_well_formed_frame_from_a_raw_socket_is_delivered()
    {
        await using var fake = await FakeLeftNeighbour.ConnectAsync(maxChunkElements: 1024);
        var key = new ChunkKey(TcpTestRing.Generation, Step: -3, Bucket: 2, Lane: 1, RingStep: 1, Chunk: 5);
        var frame = new byte[TcpWireFormat.FrameHeaderSize + (3 * sizeof(float))];
        TcpWireFormat.WriteFrameHeader(frame, key, 3);
        BinaryPrimitives.WriteSingleLittleEndian(frame.AsSpan(40), 1.5f);
        BinaryPrimitives.WriteSingleLittleEndian(frame.AsSpan(44), -2f);
        BinaryPrimitives.WriteSingleLittleEndian(frame.AsSpan(48), 3.25f);

        await fake.ToTransport.SendAsync(frame, SocketFlags.None);
        var data = await fake.Transport.ReceiveAsync(0, key, CancellationToken.None).AsTask().WaitAsync(TestData.Timeout);

        Assert.Equal([1.5f, -2f, 3.25f], data.ToArray());
        Assert.Equal(frame.Length, fake.Transport.BytesReceived);
    }

    [Fact]
    public async Task The_left_neighbour_closing_fails_a_waiting_receive()
    {
        await using var fake = await FakeLeftNeighbour.ConnectAsync(maxChunkElements: 1024);
        var waiting = fake.Transport.ReceiveAsync(0, new ChunkKey(TcpTestRing.Generation, 1, 0, 0, 0, 0), CancellationToken.None).AsTask();

        fake.ToTransport.Shutdown(SocketShutdown.Both);

        await Assert.ThrowsAsync<IOException>(() => waiting.WaitAsync(TestData.Timeout));
    }

    [Fact]
    public async Task Dispose_unblocks_waiting_receives_and_later_calls_fail()
    {
        var ring = await TcpTestRing.ConnectAsync(2, ChunkElements);
        var key = new ChunkKey(TcpTestRing.Generation, 1, 0, 0, 0, 0);
        var waiting = ring.Peers[0].ReceiveAsync(1, key, CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);

        await ring.Peers[0].DisposeAsync().AsTask().WaitAsync(TestData.Timeout);

        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(TestData.Timeout));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => ring.Peers[0].ReceiveAsync(1, key, CancellationToken.None).AsTask());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => ring.Peers[0].SendAsync(1, key, new float[1], CancellationToken.None).AsTask());

        // The other peer's connection from the disposed one is gone too.
        await Assert.ThrowsAsync<IOException>(
            () => ring.Peers[1].ReceiveAsync(0, key, CancellationToken.None).AsTask().WaitAsync(TestData.Timeout));
        await ring.DisposeAsync();
    }

    [Fact]
    public async Task Cancelling_a_waiting_receive_cancels_only_that_receive()
    {
        await using var ring = await TcpTestRing.ConnectAsync(2, ChunkElements);
        using var cts = new CancellationTokenSource();
        var waiting = ring.Peers[0].ReceiveAsync(1, new ChunkKey(TcpTestRing.Generation, 1, 0, 0, 0, 0), cts.Token).AsTask();

        cts.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TestData.Timeout));
        await AssertRingWorks(ring, step: 2);
    }

    [Fact]
    public async Task Sends_and_receives_only_reach_the_neighbours_and_bad_chunks_are_refused_before_the_wire()
    {
        await using var ring = await TcpTestRing.ConnectAsync(3, maxChunkElements: 4);
        var peer = ring.Peers[0];
        var key = new ChunkKey(TcpTestRing.Generation, 1, 0, 0, 0, 0);

        var toLeft = await Assert.ThrowsAsync<InvalidOperationException>(() => peer.SendAsync(2, key, new float[1], CancellationToken.None).AsTask());
        Assert.Contains("right neighbour 1", toLeft.Message);
        await Assert.ThrowsAsync<InvalidOperationException>(() => peer.ReceiveAsync(1, key, CancellationToken.None).AsTask());
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => peer.SendAsync(3, key, new float[1], CancellationToken.None).AsTask());
        await Assert.ThrowsAsync<ArgumentException>(() => peer.SendAsync(1, key, new float[5], CancellationToken.None).AsTask());
        await Assert.ThrowsAsync<ArgumentException>(() => peer.SendAsync(1, key with { Generation = 8 }, new float[1], CancellationToken.None).AsTask());
        await Assert.ThrowsAsync<ArgumentException>(() => peer.SendAsync(1, key with { RingStep = 4 }, new float[1], CancellationToken.None).AsTask());

        // None of that reached the wire: the connection still works.
        await AssertRingWorks(ring, step: 2);
    }

    [Fact]
    public async Task A_single_peer_ring_connects_to_nobody_and_all_reduce_is_a_no_op()
    {
        var listener = TcpRingTransport.Listen(IPAddress.Loopback, 0);
        await using var alone = await TcpRingTransport.ConnectAsync(
            0, [(IPEndPoint)listener.LocalEndpoint], listener, 1, TcpTestRing.Token, 16, CancellationToken.None).WaitAsync(TestData.Timeout);
        var buffer = new float[] { 1, 2, 3 };

        await RingAllReduce.RunAsync(alone, buffer, ChunkKey.Call(1, 1, 0, 0), CancellationToken.None);

        Assert.Equal([1f, 2f, 3f], buffer);
        Assert.Throws<InvalidOperationException>(() => alone.SendAsync(0, new ChunkKey(1, 1, 0, 0, 0, 0), new float[1], CancellationToken.None));
    }

    [Fact]
    public async Task Connecting_gives_up_when_the_neighbours_never_come()
    {
        var listener = TcpRingTransport.Listen(IPAddress.Loopback, 0);
        var silent = TcpRingTransport.Listen(IPAddress.Loopback, 0);
        try
        {
            IPEndPoint[] peers = [(IPEndPoint)listener.LocalEndpoint, (IPEndPoint)silent.LocalEndpoint];
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

            await Assert.ThrowsAnyAsync<OperationCanceledException>(
                () => TcpRingTransport.ConnectAsync(0, peers, listener, 1, TcpTestRing.Token, 16, cts.Token).WaitAsync(TestData.Timeout));

            // Giving up disposed the transport, which stopped its listener.
            using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            var refused = await Assert.ThrowsAsync<SocketException>(() => probe.ConnectAsync(peers[0]).WaitAsync(TestData.Timeout));
            Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
        }
        finally
        {
            silent.Stop();
        }
    }

    /// <summary>What a peer's ring sends: per step its segment's floats plus a 40-byte header per chunk.</summary>
    private static long ExpectedFrameBytes(TcpRingTransport peer) =>
        RingSchedule.For(peer.PeerCount, peer.PeerIndex).Steps.Sum(s =>
        {
            int count = Partition.Slice(Length, peer.PeerCount, s.SendSegment).Count;
            long chunks = (count + ChunkElements - 1) / ChunkElements;
            return (chunks * TcpWireFormat.FrameHeaderSize) + ((long)count * sizeof(float));
        });

    internal static async Task RunRing(IReadOnlyList<IRingTransport> peers, float[][] buffers, long step)
    {
        using var cts = new CancellationTokenSource(TestData.Timeout);
        var runs = peers.Select((t, p) => RingAllReduce.RunAsync(t, buffers[p], ChunkKey.Call(TcpTestRing.Generation, step, bucket: 0, lane: 0), cts.Token));
        await Task.WhenAll(runs).WaitAsync(TestData.Timeout);
    }

    internal static async Task AssertRingWorks(TcpTestRing ring, long step)
    {
        int n = ring.Peers.Length;
        var buffers = Enumerable.Range(0, n).Select(p => TestData.RandomFloats(1000, seed: p + 100)).ToArray();
        var expected = TestData.ReferenceSum(buffers, 1000);

        await RunRing(ring.Peers, buffers, step);

        TestData.AssertCloseToReference(expected, buffers[0], n);
        Assert.All(buffers, b => Assert.Equal(buffers[0], b));
    }

    /// <summary>
    /// A real transport as peer 1 of a two-peer ring whose peer 0 is played by raw sockets, so a test
    /// can write any bytes to it after a valid handshake.
    /// </summary>
    private sealed class FakeLeftNeighbour : IAsyncDisposable
    {
        private FakeLeftNeighbour(TcpRingTransport transport, Socket fromTransport, Socket toTransport, TcpListener listener)
        {
            Transport = transport;
            FromTransport = fromTransport;
            ToTransport = toTransport;
            Listener = listener;
        }

        public TcpRingTransport Transport { get; }

        /// <summary>The transport's connection to its right neighbour (the fake), accepted and left idle.</summary>
        public Socket FromTransport { get; }

        /// <summary>The fake's connection to the transport, handshake done: frames go here.</summary>
        public Socket ToTransport { get; }

        private TcpListener Listener { get; }

        public static async Task<FakeLeftNeighbour> ConnectAsync(int maxChunkElements)
        {
            using var cts = new CancellationTokenSource(TestData.Timeout);
            var peer = await TcpTestRing.StartPeerOneAsync(maxChunkElements, sharedMemory: false, cts.Token);
            var toTransport = await TcpTestRing.HandshakeAsync(peer.Address, TcpTestRing.Generation, claimedPeer: 0, TcpTestRing.Token);
            return new FakeLeftNeighbour(await peer.Connecting, peer.FromTransport, toTransport, peer.FakeListener);
        }

        public async ValueTask DisposeAsync()
        {
            await Transport.DisposeAsync();
            FromTransport.Dispose();
            ToTransport.Dispose();
            Listener.Stop();
        }
    }
}
