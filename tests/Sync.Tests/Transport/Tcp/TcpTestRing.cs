using System.Net;
using System.Net.Sockets;
using ActorTrain.Sync.Transport.Tcp;

namespace ActorTrain.Sync.Tests.Transport.Tcp;

/// <summary>A ring of TCP transports in this process, each with its own loopback listener.</summary>
internal sealed class TcpTestRing : IAsyncDisposable
{
    public static readonly byte[] Token = [0x5e, 0x11, 0xa7, 0x03, 0x42, 0x99, 0x10, 0xcd, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
    public const long Generation = 7;

    private TcpTestRing(TcpRingTransport[] peers)
    {
        Peers = peers;
    }

    public TcpRingTransport[] Peers { get; }

    /// <param name="tls">Each peer's TLS options (null: plain TCP).</param>
    /// <param name="sharedMemory">Whether each peer allows shared memory with its neighbours on this host (null: none does).</param>
    public static async Task<TcpTestRing> ConnectAsync(int peerCount, int maxChunkElements, Func<int, TcpTlsOptions?>? tls = null,
        Func<int, bool>? sharedMemory = null)
    {
        var listeners = Enumerable.Range(0, peerCount).Select(_ => TcpRingTransport.Listen(IPAddress.Loopback, 0)).ToArray();
        var addresses = listeners.Select(l => (IPEndPoint)l.LocalEndpoint).ToArray();
        using var cts = new CancellationTokenSource(TestData.Timeout);
        var connecting = listeners
            .Select((listener, p) => TcpRingTransport.ConnectAsync(p, addresses, listener, Generation, Token, maxChunkElements, cts.Token, tls?.Invoke(p),
                sharedMemory: sharedMemory?.Invoke(p) ?? false))
            .ToArray();
        try
        {
            return new TcpTestRing(await Task.WhenAll(connecting));
        }
        catch
        {
            foreach (var task in connecting.Where(t => t.IsCompletedSuccessfully))
            {
                await task.Result.DisposeAsync();
            }

            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var peer in Peers)
        {
            await peer.DisposeAsync();
        }
    }

    /// <summary>Connects to <paramref name="target"/> and sends a handshake; returns the socket (the caller closes it).</summary>
    public static async Task<Socket> HandshakeAsync(IPEndPoint target, long generation, int claimedPeer, byte[] token)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var cts = new CancellationTokenSource(TestData.Timeout);
            await socket.ConnectAsync(target, cts.Token);
            await TcpRingTransport.HandshakeAsync(socket, TcpWireFormat.HelloOf(generation, claimedPeer, token), peer: -1, cts.Token);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Starts a real transport as peer 1 of a two-peer ring whose peer 0 is the test: accepts the transport's
    /// connection to its right neighbour, checks its hello (with a shared-memory offer when
    /// <paramref name="sharedMemory"/>, left unread) and accepts it over the socket. The transport's
    /// <see cref="PeerOne.Connecting"/> completes once the test has connected to <see cref="PeerOne.Address"/> as its left neighbour.
    /// </summary>
    public static async Task<PeerOne> StartPeerOneAsync(int maxChunkElements, bool sharedMemory, CancellationToken cancellationToken)
    {
        var fakeListener = TcpRingTransport.Listen(IPAddress.Loopback, 0);
        var realListener = TcpRingTransport.Listen(IPAddress.Loopback, 0);
        IPEndPoint[] peers = [(IPEndPoint)fakeListener.LocalEndpoint, (IPEndPoint)realListener.LocalEndpoint];
        var connecting = TcpRingTransport.ConnectAsync(1, peers, realListener, Generation, Token, maxChunkElements, cancellationToken, sharedMemory: sharedMemory);

        var fromTransport = await fakeListener.AcceptSocketAsync(cancellationToken);
        var hello = new byte[TcpWireFormat.HelloSize(Token.Length)];
        Assert.True(await SocketIo.ReceiveExactlyAsync(fromTransport, hello, cancellationToken));
        Assert.True(TcpWireFormat.TryReadHello(hello, out var parsed));
        Assert.Equal(new Hello(TcpWireFormat.ProtocolVersion, Generation, 1, Token.Length, sharedMemory ? TcpWireFormat.OffersSharedMemory : 0), parsed);
        var answer = new byte[TcpWireFormat.AnswerSize];
        TcpWireFormat.WriteAnswer(answer, TcpWireFormat.Accepted);
        await fromTransport.SendAsync(answer, SocketFlags.None, cancellationToken);
        return new PeerOne(connecting, peers[1], fromTransport, fakeListener);
    }

    /// <summary>What <see cref="StartPeerOneAsync"/> started: the test owns and closes the socket and the listener.</summary>
    /// <param name="Connecting">The transport, once its left neighbour has connected.</param>
    /// <param name="Address">Where the transport accepts its left neighbour.</param>
    /// <param name="FromTransport">The transport's connection to its right neighbour (the test), accepted and left idle.</param>
    /// <param name="FakeListener">The test's listener as peer 0.</param>
    internal sealed record PeerOne(Task<TcpRingTransport> Connecting, IPEndPoint Address, Socket FromTransport, TcpListener FakeListener);

    /// <summary>Reads until the peer closes the connection (or resets it); fails the test after the timeout.</summary>
    public static async Task AssertClosedByPeerAsync(Socket socket)
    {
        using var cts = new CancellationTokenSource(TestData.Timeout);
        var buffer = new byte[256];
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token) > 0)
            {
            }
        }
        catch (SocketException)
        {
            // Reset instead of an orderly close: closed all the same.
        }
    }

    /// <summary>Polls <paramref name="condition"/> until it holds or the test times out.</summary>
    public static async Task EventuallyAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TestData.Timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"Timed out waiting until {what}.");
            }

            await Task.Delay(10);
        }
    }
}
