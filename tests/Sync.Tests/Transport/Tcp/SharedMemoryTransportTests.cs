using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using ActorTrain.Sync.Transport;
using ActorTrain.Sync.Transport.Tcp;
using ActorTrain.Tests.Shared;

namespace ActorTrain.Sync.Tests.Transport.Tcp;

/// <summary>The TCP transport's hops between peers on this host, moved through /dev/shm.</summary>
public class SharedMemoryTransportTests
{
    private const int ChunkElements = TcpRingTransport.RecommendedMaxChunkElements;

    [Theory]
    [InlineData(2, 3_000_017)] // segments of 6 MB pass through rings of 4 MiB: the writer goes round the ring, and may wait for room
    [InlineData(3, 1_000_003)]
    public async Task Peers_on_this_host_reduce_through_shared_memory_bitwise_as_over_the_socket(int n, int length)
    {
        var inputs = Enumerable.Range(0, n).Select(p => TestData.RandomFloats(length, seed: (31 * p) + n)).ToArray();
        var overSocket = inputs.Select(b => (float[])b.Clone()).ToArray();
        var overSharedMemory = inputs.Select(b => (float[])b.Clone()).ToArray();
        await using (var tcp = await TcpTestRing.ConnectAsync(n, ChunkElements))
        {
            await TcpRingTransportTests.RunRing(tcp.Peers, overSocket, step: 1);
            Assert.All(tcp.Peers, p => Assert.False(p.SendsOverSharedMemory || p.ReceivesOverSharedMemory));
        }

        await using var shm = await TcpTestRing.ConnectAsync(n, ChunkElements, sharedMemory: _ => true);
        Assert.All(shm.Peers, p => Assert.True(p.SendsOverSharedMemory && p.ReceivesOverSharedMemory, p.SharedMemoryNote));
        await TcpRingTransportTests.RunRing(shm.Peers, overSharedMemory, step: 1);

        for (int p = 0; p < n; p++)
        {
            Assert.Equal(overSocket[p], overSharedMemory[p]);
        }

        // A second step over the same rings: their counters carry on from where the first left them.
        var again = inputs.Select(b => (float[])b.Clone()).ToArray();
        await TcpRingTransportTests.RunRing(shm.Peers, again, step: 2);
        Assert.All(again, b => Assert.Equal(overSocket[0], b));
        foreach (var peer in shm.Peers)
        {
            Assert.Equal(peer.BytesSent, shm.Peers[peer.RightNeighbour].BytesReceived);
            Assert.Equal(0, peer.DroppedFrames);
        }
    }

    [Fact]
    public async Task No_ring_file_is_left_in_dev_shm_once_the_ring_stands_or_after_it_is_disposed()
    {
        var ring = await TcpTestRing.ConnectAsync(3, ChunkElements, sharedMemory: _ => true);
        try
        {
            Assert.All(ring.Peers, p => Assert.True(p.SendsOverSharedMemory, p.SharedMemoryNote));
            Assert.Empty(OwnRingFiles());
        }
        finally
        {
            await ring.DisposeAsync();
        }

        Assert.Empty(OwnRingFiles());
    }

    [Fact]
    public async Task A_hop_whose_reader_does_not_allow_shared_memory_stays_on_the_socket_and_says_why()
    {
        await using var ring = await TcpTestRing.ConnectAsync(2, ChunkElements, sharedMemory: p => p == 0);
        var buffers = Enumerable.Range(0, 2).Select(p => TestData.RandomFloats(100_003, seed: p)).ToArray();
        var expected = TestData.ReferenceSum(buffers, 100_003);

        await TcpRingTransportTests.RunRing(ring.Peers, buffers, step: 1);

        Assert.All(ring.Peers, p => Assert.False(p.SendsOverSharedMemory || p.ReceivesOverSharedMemory));
        Assert.Contains("did not open the shared-memory ring", ring.Peers[0].SharedMemoryNote);
        Assert.Null(ring.Peers[1].SharedMemoryNote);
        TestData.AssertCloseToReference(expected, buffers[0], 2);
        Assert.Equal(buffers[0], buffers[1]);
        Assert.Empty(OwnRingFiles());
    }

    [Fact]
    public async Task The_writer_going_away_fails_the_readers_waiting_receive()
    {
        var ring = await TcpTestRing.ConnectAsync(2, ChunkElements, sharedMemory: _ => true);
        var key = new ChunkKey(TcpTestRing.Generation, 1, 0, 0, 0, 0);
        var waiting = ring.Peers[0].ReceiveAsync(1, key, CancellationToken.None).AsTask();
        await Task.Delay(50);
        Assert.False(waiting.IsCompleted);

        await ring.Peers[1].DisposeAsync().AsTask().WaitAsync(TestData.Timeout);

        await Assert.ThrowsAsync<IOException>(() => waiting.WaitAsync(TestData.Timeout));
        await ring.DisposeAsync();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)] // the socket's receive loop delivers what it read before the end just the same
    public async Task A_chunk_written_just_before_the_writer_closes_still_arrives(bool sharedMemory)
    {
        var ring = await TcpTestRing.ConnectAsync(2, ChunkElements, sharedMemory: _ => sharedMemory);
        Assert.Equal(sharedMemory, ring.Peers[0].ReceivesOverSharedMemory);
        var key = new ChunkKey(TcpTestRing.Generation, 1, 0, 0, 0, 0);

        await ring.Peers[1].SendAsync(0, key, new float[] { 1, 2, 3 }, CancellationToken.None);
        await ring.Peers[1].DisposeAsync();
        await TcpTestRing.EventuallyAsync(() => ring.Peers[0].ReceiveFaulted, "the reader sees the connection end");
        var data = await ring.Peers[0].ReceiveAsync(1, key, CancellationToken.None).AsTask().WaitAsync(TestData.Timeout);

        Assert.Equal([1f, 2f, 3f], data.ToArray());
        await ring.DisposeAsync();
    }

    [Theory]
    [InlineData("actortrain-ring-1-0123456789abcdef0123456789abcdef", "no such file")]
    [InlineData("../../etc/passwd", "not a ring's file name")]
    public async Task An_offer_of_a_file_that_is_not_a_ring_is_declined_and_the_hop_stays_on_the_socket(string name, string why)
    {
        await using var target = await ListeningPeerAsync();
        using var socket = await OfferAsync(target.Address, name, new byte[SharedMemoryRing.NonceSize], expectAnswer: TcpWireFormat.Accepted);
        var transport = await target.Connected;

        Assert.False(transport.ReceivesOverSharedMemory);
        Assert.Contains(why, transport.SharedMemoryNote);

        // The hop works over the socket.
        var key = new ChunkKey(TcpTestRing.Generation, 1, 0, 0, 0, 0);
        var frame = new byte[TcpWireFormat.FrameHeaderSize + sizeof(float)];
        TcpWireFormat.WriteFrameHeader(frame, key, 1);
        BitConverter.TryWriteBytes(frame.AsSpan(TcpWireFormat.FrameHeaderSize), 4.5f);
        await socket.SendAsync(frame, SocketFlags.None);
        var data = await transport.ReceiveAsync(0, key, CancellationToken.None).AsTask().WaitAsync(TestData.Timeout);
        Assert.Equal([4.5f], data.ToArray());
    }

    [Fact]
    public async Task An_offer_with_another_nonce_than_its_ring_is_declined()
    {
        using var ring = SharedMemoryRing.Create(SharedMemoryRing.MinCapacity);
        await using var target = await ListeningPeerAsync();
        var wrongNonce = ring.Nonce.Select(b => (byte)~b).ToArray();
        using var socket = await OfferAsync(target.Address, ring.Name, wrongNonce, expectAnswer: TcpWireFormat.Accepted);
        var transport = await target.Connected;

        Assert.False(transport.ReceivesOverSharedMemory);
        Assert.Contains("another nonce", transport.SharedMemoryNote);
    }

    [Fact]
    public async Task A_malformed_offer_is_rejected_and_the_connection_closed()
    {
        await using var target = await ListeningPeerAsync();
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(target.Address);
        var hello = new byte[TcpWireFormat.HelloSize(TcpTestRing.Token.Length) + 1];
        TcpWireFormat.WriteHello(hello, TcpWireFormat.ProtocolVersion, TcpTestRing.Generation, 0, TcpTestRing.Token, TcpWireFormat.OffersSharedMemory);
        hello[^1] = 0; // a name of no bytes

        await socket.SendAsync(hello, SocketFlags.None);

        await TcpTestRing.AssertClosedByPeerAsync(socket);

        // The rightful left neighbour still gets in, and the transport counted the refusal.
        using var rightful = await TcpTestRing.HandshakeAsync(target.Address, TcpTestRing.Generation, claimedPeer: 0, TcpTestRing.Token);
        var transport = await target.Connected;
        Assert.Equal(1, transport.RejectedConnections);
        Assert.Contains("malformed shared-memory offer", transport.LastRejection);
    }

    private static string[] OwnRingFiles() =>
        Directory.GetFiles(SharedMemoryRing.Directory, $"actortrain-ring-{Environment.ProcessId}-*");

    /// <summary>Sends a hello with a shared-memory offer of <paramref name="name"/> to a transport and checks its answer.</summary>
    private static async Task<Socket> OfferAsync(IPEndPoint target, string name, byte[] nonce, int expectAnswer)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cts = new CancellationTokenSource(TestData.Timeout);
        await socket.ConnectAsync(target, cts.Token);
        var hello = TcpWireFormat.HelloOffering(TcpTestRing.Generation, 0, TcpTestRing.Token, name, nonce);
        await socket.SendAsync(hello, SocketFlags.None, cts.Token);
        var answer = new byte[TcpWireFormat.AnswerSize];
        Assert.True(await SocketIo.ReceiveExactlyAsync(socket, answer, cts.Token));
        Assert.True(TcpWireFormat.TryReadAnswer(answer, out int status));
        Assert.Equal(expectAnswer, status);
        return socket;
    }

    /// <summary>
    /// Peer 1 of a two-peer ring that allows shared memory, whose left and right neighbour (peer 0) is the test:
    /// the test accepts its connection to the right, and connects to it as the left neighbour by hand.
    /// </summary>
    private static async Task<ListeningPeer> ListeningPeerAsync()
    {
        var cts = new CancellationTokenSource(TestData.Timeout);
        var peer = await TcpTestRing.StartPeerOneAsync(maxChunkElements: 1024, sharedMemory: true, cts.Token);
        return new ListeningPeer(peer.Address, peer.Connecting, peer.FromTransport, peer.FakeListener, cts);
    }

    private sealed class ListeningPeer(IPEndPoint address, Task<TcpRingTransport> connecting, Socket fromTransport, TcpListener fake, CancellationTokenSource cts)
        : IAsyncDisposable
    {
        public IPEndPoint Address { get; } = address;

        public Task<TcpRingTransport> Connected => connecting.WaitAsync(TestData.Timeout);


        public async ValueTask DisposeAsync()
        {
            cts.Cancel();
            try
            {
                await (await connecting).DisposeAsync();
            }
            catch (OperationCanceledException)
            {
            }

            fromTransport.Dispose();
            fake.Stop();
            cts.Dispose();
        }
    }
}

/// <summary>The shared-memory ring by itself: both ends in this process.</summary>
public class SharedMemoryRingTests
{
    [Fact]
    public void Bytes_come_out_as_they_went_in_across_the_end_of_the_ring_and_a_full_ring_takes_nothing()
    {
        using var writer = SharedMemoryRing.Create(SharedMemoryRing.MinCapacity);
        using var reader = SharedMemoryRing.TryOpen(writer.Name, writer.Nonce, out var problem) ?? throw new Xunit.Sdk.XunitException(problem);
        var source = new byte[(int)SharedMemoryRing.MinCapacity * 3 + 17];
        new Random(5).NextBytes(source);
        var sink = new byte[source.Length];
        int written = 0, read = 0;
        while (read < source.Length)
        {
            // Uneven pieces, so that writes and reads straddle the end of the ring at different places.
            written += writer.Write(source.AsSpan(written, Math.Min(source.Length - written, 50_000)), out _);
            if (written - read == SharedMemoryRing.MinCapacity)
            {
                Assert.Equal(0, writer.Write(source.AsSpan(written, 1), out _));
            }

            read += reader.Read(sink.AsSpan(read, Math.Min(source.Length - read, 30_001)), out _);
        }

        Assert.Equal(source, sink);
    }

    [Fact]
    public void A_sleeping_reader_is_woken_once_by_the_next_write_and_a_sleeping_writer_by_the_next_read()
    {
        using var writer = SharedMemoryRing.Create(SharedMemoryRing.MinCapacity);
        using var reader = SharedMemoryRing.TryOpen(writer.Name, writer.Nonce, out var problem) ?? throw new Xunit.Sdk.XunitException(problem);
        var bytes = new byte[1000];

        Assert.True(reader.PrepareReaderWait()); // empty: sleep
        writer.Write(bytes, out bool wake);
        Assert.True(wake);
        writer.Write(bytes, out wake);
        Assert.False(wake); // already woken

        Assert.False(reader.PrepareReaderWait()); // data is there: do not sleep
        writer.Write(bytes, out wake);
        Assert.False(wake); // the reader withdrew

        var fill = new byte[SharedMemoryRing.MinCapacity];
        while (writer.Write(fill, out _) > 0)
        {
        }

        Assert.True(writer.PrepareWriterWait()); // full: sleep
        reader.Read(new byte[10], out bool wakeWriter);
        Assert.True(wakeWriter);
        reader.Read(new byte[10], out wakeWriter);
        Assert.False(wakeWriter);
    }

    [Fact]
    public void A_ring_is_opened_only_with_its_own_nonce_and_name()
    {
        using var writer = SharedMemoryRing.Create(SharedMemoryRing.MinCapacity);

        Assert.Null(SharedMemoryRing.TryOpen(writer.Name, new byte[SharedMemoryRing.NonceSize], out var problem));
        Assert.Contains("another nonce", problem);
        Assert.Null(SharedMemoryRing.TryOpen("actortrain-ring-1-" + new string('0', 32), writer.Nonce, out problem));
        Assert.Contains("no such file", problem);
        Assert.Null(SharedMemoryRing.TryOpen("../shm/" + writer.Name, writer.Nonce, out problem));
        Assert.Contains("not a ring's file name", problem);

        writer.Unlink();
        Assert.Null(SharedMemoryRing.TryOpen(writer.Name, writer.Nonce, out problem));
        Assert.Contains("no such file", problem);
    }

    [Fact]
    public void Counters_that_do_not_fit_the_ring_fail_the_read_and_the_write_instead_of_reading_out_of_it()
    {
        using var writer = SharedMemoryRing.Create(SharedMemoryRing.MinCapacity);
        using var reader = SharedMemoryRing.TryOpen(writer.Name, writer.Nonce, out var problem) ?? throw new Xunit.Sdk.XunitException(problem);
        using (var raw = System.IO.MemoryMappedFiles.MemoryMappedFile.CreateFromFile(
                   Path.Combine(SharedMemoryRing.Directory, writer.Name), FileMode.Open, null, 0, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.ReadWrite))
        using (var view = raw.CreateViewAccessor())
        {
            view.Write(64, SharedMemoryRing.MinCapacity * 5); // head: far more written than the ring holds
        }

        var e = Assert.Throws<IOException>(() => reader.Read(new byte[16], out _));
        Assert.Contains("corrupt", e.Message);
        Assert.Throws<IOException>(() => writer.Write(new byte[16], out _));
    }

    [RootFact]
    public void A_full_shared_memory_file_system_fails_the_ring_s_creation_cleanly_and_leaves_no_file()
    {
        using var shm = new SmallTmpfs(1024 * 1024);

        // Its memory is reserved up front: no later fault on a page that cannot be backed.
        var e = Assert.Throws<IOException>(() => SharedMemoryRing.Create(4L << 20, shm.Path));

        Assert.Contains("full", e.Message, StringComparison.OrdinalIgnoreCase); // .NET: "… because the disk was full"
        Assert.Empty(Directory.GetFiles(shm.Path));
    }

    [Fact]
    public void A_ring_file_left_by_a_process_that_is_gone_is_removed_and_a_live_ones_is_kept()
    {
        using var exited = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        exited.WaitForExit();
        using var running = Process.Start(new ProcessStartInfo("sleep", "60") { UseShellExecute = false })!;
        var orphan = Path.Combine(SharedMemoryRing.Directory, $"actortrain-ring-{exited.Id}-{new string('a', 32)}");
        var recent = Path.Combine(SharedMemoryRing.Directory, $"actortrain-ring-{exited.Id}-{new string('b', 32)}");
        var live = Path.Combine(SharedMemoryRing.Directory, $"actortrain-ring-{running.Id}-{new string('c', 32)}");
        try
        {
            foreach (var path in new[] { orphan, recent, live })
            {
                File.WriteAllBytes(path, [1]);
            }

            File.SetLastWriteTimeUtc(orphan, DateTime.UtcNow.AddMinutes(-5));
            File.SetLastWriteTimeUtc(live, DateTime.UtcNow.AddMinutes(-5));

            SharedMemoryRing.RemoveOrphans();

            Assert.False(File.Exists(orphan));
            Assert.True(File.Exists(recent)); // its writer may still be in its handshake: a minute's grace
            Assert.True(File.Exists(live));
        }
        finally
        {
            running.Kill();
            File.Delete(orphan);
            File.Delete(recent);
            File.Delete(live);
        }
    }
}
