using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>
/// Sync's ring transport over plain TCP: the data plane that moves gradient chunks between nodes
/// without Akka remoting. Each peer listens, connects to its right neighbour and is connected to
/// by its left one, so every ring hop is one TCP connection used in one direction. A connection
/// is admitted only after a handshake naming this protocol, the world generation, the connecting
/// peer's ring position and the generation's token; after that it carries frames (a fixed
/// header and the floats, see <see cref="TcpWireFormat"/>). Everything read from the network is
/// checked: a refused handshake or a malformed frame is counted, its connection closed, and
/// receives waiting on a lost connection fail instead of hanging. With <see cref="TcpTlsOptions"/>
/// every connection first runs TLS with mutual authentication (a peer whose certificate does not
/// chain to the configured CA, or that presents none, is refused and counted), and the handshake
/// and frames then travel encrypted; without, the bytes go to the socket directly. With shared
/// memory allowed, a hop whose two ends are on one host (the neighbour's address is loopback or
/// one of this host's own) moves its frames through a <see cref="SharedMemoryRing"/> instead,
/// and the socket carries only wake-ups (<see cref="SharedMemoryConnection"/>); a hop between
/// hosts, or one whose ring cannot be made or opened, stays on the socket.
/// </summary>
/// <remarks>
/// One transport serves one generation. A new generation connects a new transport (with a new
/// listener and token); the old one is disposed, which closes its connections and listener.
/// Every received chunk is read straight into an array from this transport's pool, which the receive
/// then owns until it hands it back with <see cref="Release"/>; the next chunk reuses it, so a steady
/// ring allocates no receive buffers. A chunk never released is simply collected. Chunks the transport
/// drops (duplicates, or still unreceived when it is disposed) go back to the pool, and a disposed
/// transport hands out nothing more. Keep <see cref="MaxChunkElements"/> at or below
/// <see cref="RecommendedMaxChunkElements"/>: larger arrays land on the large object heap, whose
/// fresh pages cost a page fault each when the socket fills them (see docs/PERFORMANCE.md).
/// </remarks>
internal sealed class TcpRingTransport : IRingTransport, IAsyncDisposable
{
    /// <summary>Longest token a handshake may carry.</summary>
    public const int MaxTokenBytes = 256;

    /// <summary>Largest chunk (20,480 floats, 80 KiB) whose receive array stays below the large object heap's 85,000-byte threshold.</summary>
    public const int RecommendedMaxChunkElements = 20_480;

    /// <summary>Largest chunk a transport may be configured for (256 MiB of floats).</summary>
    public const int MaxChunkElementsLimit = 1 << 26;

    private readonly TcpListener listener;
    private readonly byte[] token;
    private readonly TcpTlsOptions? tls;
    private readonly bool sharedMemory;
    private readonly ChunkMailbox mailbox;
    private readonly ReceiveBufferPool buffers;
    private readonly Lock gate = new();

    // Cancelled on dispose: stops accepting, handshakes and the receive loop.
    private readonly CancellationTokenSource closing = new();

    // Cancelled when receiving can no longer succeed (connection lost, malformed frame, dispose);
    // waiting receives are linked to it.
    private readonly CancellationTokenSource receiving = new();
    private readonly TaskCompletionSource leftConnected = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private TcpFrameWriter? writer;
    private DataPlaneConnection? incoming;
    private Exception? receiveFault;
    private Task acceptLoop = Task.CompletedTask;
    private Task receiveLoop = Task.CompletedTask;
    private string? lastRejection;
    private string? sharedMemoryNote;
    private bool sendsOverSharedMemory;
    private bool receivesOverSharedMemory;
    private int disposed;
    private long bytesReceived;
    private long rejectedConnections;
    private long droppedFrames;

    /// <summary>The address the left neighbour listens on: its connection must come from that host.</summary>
    private readonly IPAddress leftAddress;

    private TcpRingTransport(int peerIndex, int peerCount, TcpListener listener, long generation, byte[] token, int maxChunkElements, TcpTlsOptions? tls,
        IPAddress leftAddress, long maxPendingBytes, bool sharedMemory)
    {
        this.leftAddress = leftAddress;
        this.tls = tls;
        this.sharedMemory = sharedMemory;
        PeerIndex = peerIndex;
        PeerCount = peerCount;
        this.listener = listener;
        Generation = generation;
        this.token = token;
        MaxChunkElements = maxChunkElements;
        buffers = new ReceiveBufferPool(maxChunkElements);
        mailbox = new ChunkMailbox(buffers.Return, maxPendingBytes);
        RightNeighbour = (peerIndex + 1) % peerCount;
        LeftNeighbour = (peerIndex + peerCount - 1) % peerCount;
        ListenEndPoint = (IPEndPoint)listener.LocalEndpoint;
    }

    /// <summary>How long an accepted connection may take to send its handshake before it is closed.</summary>
    public static TimeSpan HandshakeTimeout { get; } = TimeSpan.FromSeconds(10);

    /// <inheritdoc />
    public int PeerIndex { get; }

    /// <inheritdoc />
    public int PeerCount { get; }

    /// <inheritdoc />
    public int MaxChunkElements { get; }

    /// <summary>The world generation this transport's connections belong to; frames of any other are refused.</summary>
    public long Generation { get; }

    /// <summary>The only peer this one sends to.</summary>
    public int RightNeighbour { get; }

    /// <summary>The only peer this one receives from.</summary>
    public int LeftNeighbour { get; }

    /// <summary>Whether the connection from the left neighbour failed (otherwise a failure was on the way to the right one).</summary>
    public bool ReceiveFaulted
    {
        get
        {
            lock (gate)
            {
                return receiveFault is not null;
            }
        }
    }

    /// <summary>Whether this transport's connections run inside TLS with mutual authentication.</summary>
    public bool UsesTls => tls is not null;

    /// <summary>Whether frames to the right neighbour go through shared memory (it is on this host).</summary>
    public bool SendsOverSharedMemory
    {
        get { lock (gate) { return sendsOverSharedMemory; } }
    }

    /// <summary>Whether frames from the left neighbour come through shared memory (it is on this host).</summary>
    public bool ReceivesOverSharedMemory
    {
        get { lock (gate) { return receivesOverSharedMemory; } }
    }

    /// <summary>
    /// Why a hop on this host stayed on the socket although shared memory was allowed (the ring could not be made,
    /// or the other side could not open it), for diagnostics; null when there was no such hop.
    /// </summary>
    public string? SharedMemoryNote
    {
        get { lock (gate) { return sharedMemoryNote; } }
    }

    /// <summary>Where this peer's listener is bound (the actual port when it was opened on port 0).</summary>
    public IPEndPoint ListenEndPoint { get; }

    /// <summary>Frame bytes (headers and floats) sent to the right neighbour.</summary>
    public long BytesSent => writer?.BytesWritten ?? 0;

    /// <summary>Frame bytes (headers and floats) received from the left neighbour.</summary>
    public long BytesReceived => Interlocked.Read(ref bytesReceived);

    /// <summary>
    /// Connections closed at the handshake: garbage, wrong version, generation, peer or token, a second
    /// left neighbour, or (with TLS) a failed TLS handshake: no certificate, one from another CA, or no TLS at all.
    /// </summary>
    public long RejectedConnections => Interlocked.Read(ref rejectedConnections);

    /// <summary>Frames not delivered: malformed (which also closes the connection), cut off, duplicate or stale.</summary>
    public long DroppedFrames => Interlocked.Read(ref droppedFrames);

    /// <summary>Why the last connection was rejected, for diagnostics; null if none was.</summary>
    public string? LastRejection
    {
        get { lock (gate) { return lastRejection; } }
    }

    /// <summary>Received chunks not yet taken by a receive (internal: for tests).</summary>
    internal int PendingChunks => mailbox.PendingCount;

    /// <summary>The pool received chunks are read into (internal: for tests).</summary>
    internal ReceiveBufferPool ReceiveBuffers => buffers;

    /// <summary>
    /// Opens and starts the listener a transport will accept its left neighbour on. Port 0 picks a
    /// free port; read it from <see cref="TcpListener.LocalEndpoint"/> and publish it to the peers
    /// before anyone calls <see cref="ConnectAsync"/>.
    /// </summary>
    public static TcpListener Listen(IPAddress address, int port)
    {
        ArgumentNullException.ThrowIfNull(address);
        var listener = new TcpListener(address, port);
        listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Start();
        return listener;
    }

    /// <summary>
    /// Joins the ring as peer <paramref name="peerIndex"/>: connects to the right neighbour's address
    /// in <paramref name="peers"/> (retrying while it is not listening yet) and waits until the left
    /// neighbour has connected through <paramref name="listener"/>. The transport owns the listener
    /// from here on and stops it when disposed. Every peer must pass the same generation and token.
    /// Completes when both connections stand; bound the wait with <paramref name="cancellationToken"/>.
    /// With <paramref name="tls"/> every peer must use TLS with certificates of the same CA; null
    /// (the default) sends the bytes in the clear. A connection is admitted only from the host of the
    /// left neighbour's address in <paramref name="peers"/> (any loopback address for a loopback one),
    /// besides its handshake; and chunks that arrive before their reduction asks for them are held up
    /// to <paramref name="maxPendingBytes"/>, beyond which they are dropped and counted. With
    /// <paramref name="sharedMemory"/>, hops between peers on this host move their frames through shared
    /// memory; both ends must allow it, and either falls back to the socket if it cannot.
    /// </summary>
    /// <exception cref="TcpHandshakeRefusedException">The right neighbour refused the handshake.</exception>
    /// <exception cref="AuthenticationException">TLS with the right neighbour failed; the message says why.</exception>
    public static async Task<TcpRingTransport> ConnectAsync(
        int peerIndex,
        IReadOnlyList<IPEndPoint> peers,
        TcpListener listener,
        long generation,
        ReadOnlyMemory<byte> token,
        int maxChunkElements,
        CancellationToken cancellationToken,
        TcpTlsOptions? tls = null,
        long maxPendingBytes = ChunkMailbox.Unbounded,
        bool sharedMemory = false)
    {
        ArgumentNullException.ThrowIfNull(peers);
        ArgumentNullException.ThrowIfNull(listener);
        ArgumentOutOfRangeException.ThrowIfZero(peers.Count, $"{nameof(peers)}.{nameof(peers.Count)}");
        if ((uint)peerIndex >= (uint)peers.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(peerIndex), peerIndex, $"Peer index must be in 0..{peers.Count - 1}.");
        }

        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxChunkElements);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxChunkElements, MaxChunkElementsLimit);
        if (token.Length > MaxTokenBytes)
        {
            throw new ArgumentException($"The token has {token.Length} bytes; at most {MaxTokenBytes} are allowed.", nameof(token));
        }

        if (peers.Any(p => p is null))
        {
            throw new ArgumentException("Every peer needs an address.", nameof(peers));
        }

        if (!listener.Server.IsBound)
        {
            throw new ArgumentException($"The listener must be started (use {nameof(TcpRingTransport)}.{nameof(Listen)}).", nameof(listener));
        }

        var transport = new TcpRingTransport(peerIndex, peers.Count, listener, generation, token.ToArray(), maxChunkElements, tls,
            peers[(peerIndex + peers.Count - 1) % peers.Count].Address, maxPendingBytes, sharedMemory);
        transport.acceptLoop = transport.AcceptLoopAsync();
        if (transport.PeerCount == 1)
        {
            return transport;
        }

        try
        {
            await transport.ConnectRightAsync(peers[transport.RightNeighbour], cancellationToken).ConfigureAwait(false);
            await transport.leftConnected.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            return transport;
        }
        catch
        {
            await transport.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <inheritdoc />
    /// <remarks>
    /// Only the right neighbour has a connection; sending elsewhere throws <see cref="InvalidOperationException"/>.
    /// Cancelling a send that has started writing closes the connection, since the receiver would
    /// otherwise read the rest of the stream out of step.
    /// </remarks>
    public ValueTask SendAsync(int peer, ChunkKey key, ReadOnlyMemory<float> data, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) != 0, this);
        RequirePeer(peer);
        if (peer != RightNeighbour || writer is null)
        {
            throw new InvalidOperationException(
                $"Peer {PeerIndex} has a data-plane connection only to its right neighbour {RightNeighbour}" +
                (PeerCount == 1 ? " (none: it is alone in the ring)" : "") + $"; it cannot send to peer {peer}.");
        }

        if (TcpWireFormat.Problem(key, data.Length, Generation, PeerCount, MaxChunkElements) is { } problem)
        {
            throw new ArgumentException($"Chunk {key} cannot be sent: {problem}.", nameof(data));
        }

        return writer.WriteAsync(key, data, cancellationToken);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Only the left neighbour sends to this peer; receiving from another throws
    /// <see cref="InvalidOperationException"/>. Fails with <see cref="IOException"/> once the left
    /// neighbour's connection is lost and with <see cref="ObjectDisposedException"/> once the
    /// transport is disposed, also while waiting.
    /// </remarks>
    public ValueTask<ReadOnlyMemory<float>> ReceiveAsync(int peer, ChunkKey key, CancellationToken cancellationToken)
    {
        RequirePeer(peer);
        if (peer != LeftNeighbour || PeerCount == 1)
        {
            throw new InvalidOperationException(
                $"Peer {PeerIndex} receives only from its left neighbour {LeftNeighbour}" +
                (PeerCount == 1 ? " (none: it is alone in the ring)" : "") + $"; nothing can arrive from peer {peer}.");
        }

        return WaitForChunkAsync(peer, key, cancellationToken);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Returns the chunk's array to this transport's pool. Releasing a chunk twice, or memory this
    /// transport did not hand out, throws <see cref="InvalidOperationException"/> or
    /// <see cref="ArgumentException"/>. Releasing after the transport is disposed is allowed (the array
    /// is then left to the garbage collector).
    /// </remarks>
    public void Release(ReadOnlyMemory<float> chunk) => buffers.Return(chunk);

    /// <summary>
    /// Stops the listener, closes both connections and fails receives still waiting. Chunks received but
    /// not taken go back to the pool, which keeps nothing from then on.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0)
        {
            return;
        }

        closing.Cancel();
        receiving.Cancel();
        leftConnected.TrySetCanceled();
        listener.Stop();
        writer?.Dispose();
        DataPlaneConnection? left;
        lock (gate)
        {
            left = incoming;
        }

        left?.Close();

        // Both loops end on their own once their sockets are closed; they never throw.
        await Task.WhenAll(acceptLoop, receiveLoop).ConfigureAwait(false);

        // Nothing delivers any more: what was received but not taken is discarded, and a receive
        // arriving late fails instead of getting an array the pool may lend again.
        mailbox.Close();
        buffers.Close();
    }

    private async ValueTask<ReadOnlyMemory<float>> WaitForChunkAsync(int peer, ChunkKey key, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, receiving.Token);
        try
        {
            return await mailbox.ReceiveAsync(peer, key, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && receiving.IsCancellationRequested)
        {
            // The receive loop delivers every frame it has read before it stops: a chunk that arrived before the
            // connection ended is still this receive's.
            return mailbox.TryTake(peer, key, out var arrived) ? arrived : throw ReceiveFailure(key);
        }
    }

    private Exception ReceiveFailure(ChunkKey key)
    {
        if (Volatile.Read(ref disposed) != 0)
        {
            return new ObjectDisposedException(nameof(TcpRingTransport), $"The transport was disposed; chunk {key} will not arrive.");
        }

        Exception? cause;
        lock (gate)
        {
            cause = receiveFault;
        }

        return new IOException(
            $"The data-plane connection from peer {LeftNeighbour} is lost ({cause?.Message ?? "closed"}); chunk {key} will not arrive.", cause);
    }

    /// <summary>Records why receiving stopped (first reason wins) and fails every receive.</summary>
    private void FailReceiving(Exception cause)
    {
        lock (gate)
        {
            receiveFault ??= cause;
        }

        receiving.Cancel();
    }

    private async Task ConnectRightAsync(IPEndPoint endpoint, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, closing.Token);
        for (int attempt = 1; ; attempt++)
        {
            var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                // From the address this node listens on (the one its right neighbour expects), not
                // whichever one the route picks on a host with several.
                var own = ListenEndPoint.Address;
                if (own.AddressFamily == endpoint.AddressFamily && !own.Equals(IPAddress.Any) && !own.Equals(IPAddress.IPv6Any) && !IPAddress.IsLoopback(own))
                {
                    socket.Bind(new IPEndPoint(own, 0));
                }

                await socket.ConnectAsync(endpoint, linked.Token).ConfigureAwait(false);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.TimedOut or SocketError.TryAgain)
            {
                // The neighbour's listener is not up yet: retry until the caller's deadline.
                socket.Dispose();
                await Task.Delay(Math.Min(20 * attempt, 500), linked.Token).ConfigureAwait(false);
                continue;
            }
            catch
            {
                socket.Dispose();
                throw;
            }

            DataPlaneConnection? connection = null;
            SharedMemoryRing? ring = sharedMemory && IsThisHost(endpoint.Address) ? CreateRing() : null;
            try
            {
                connection = tls is null
                    ? DataPlaneConnection.Plain(socket)
                    : await DataPlaneConnection.ConnectTlsAsync(socket, tls, RightNeighbour, linked.Token).ConfigureAwait(false);
                var hello = ring is null
                    ? TcpWireFormat.HelloOf(Generation, PeerIndex, token)
                    : TcpWireFormat.HelloOffering(Generation, PeerIndex, token, ring.Name, ring.Nonce);
                bool overSharedMemory = await HandshakeAsync(connection, hello, RightNeighbour, linked.Token).ConfigureAwait(false);
                if (overSharedMemory && ring is not null)
                {
                    // The reader has mapped the ring: the file's name is no longer needed.
                    ring.Unlink();
                    connection = new SharedMemoryConnection(connection, ring);
                    ring = null;
                    lock (gate)
                    {
                        sendsOverSharedMemory = true;
                    }
                }
                else if (ring is not null)
                {
                    Note($"peer {RightNeighbour} is on this host but did not open the shared-memory ring; frames to it go over the socket");
                }

                writer = new TcpFrameWriter(connection, RightNeighbour, MaxChunkElements);
                return;
            }
            catch
            {
                if (connection is not null)
                {
                    connection.Close();
                }
                else
                {
                    SocketIo.Close(socket);
                }

                throw;
            }
            finally
            {
                ring?.Dispose();
            }
        }
    }

    /// <summary>The writer's ring for a hop on this host, or null (noted) when /dev/shm cannot hold one.</summary>
    private SharedMemoryRing? CreateRing()
    {
        long? capacity = SharedMemoryRing.CapacityFor(TcpWireFormat.FrameHeaderSize + ((long)MaxChunkElements * sizeof(float)));
        if (capacity is null)
        {
            Note($"chunks of {MaxChunkElements} floats are too large for a shared-memory ring; frames go over the socket");
            return null;
        }

        try
        {
            return SharedMemoryRing.Create(capacity.Value);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            Note($"cannot make a shared-memory ring of {capacity.Value >> 20} MiB in {SharedMemoryRing.Directory} ({e.Message}); frames go over the socket");
            return null;
        }
    }

    private void Note(string note)
    {
        lock (gate)
        {
            sharedMemoryNote = note;
        }
    }

    /// <summary>Whether <paramref name="address"/> is loopback or one of this host's (this network namespace's) own.</summary>
    internal static bool IsThisHost(IPAddress? address)
    {
        if (address is null)
        {
            return false;
        }

        var a = address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        if (IPAddress.IsLoopback(a))
        {
            return true;
        }

        try
        {
            return System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
                .SelectMany(i => i.GetIPProperties().UnicastAddresses)
                .Any(u => (u.Address.IsIPv4MappedToIPv6 ? u.Address.MapToIPv4() : u.Address).Equals(a));
        }
        catch (System.Net.NetworkInformation.NetworkInformationException)
        {
            return false;
        }
    }

    /// <summary>The connecting side of the handshake on a plain socket (tests speak it by hand).</summary>
    internal static Task<bool> HandshakeAsync(Socket socket, byte[] hello, int peer, CancellationToken cancellationToken) =>
        HandshakeAsync(DataPlaneConnection.Plain(socket), hello, peer, cancellationToken);

    /// <summary>
    /// The connecting side of the handshake: send the hello, require an accepting answer. True when the answer
    /// accepts the hello's shared-memory offer (then the frames go through the ring).
    /// </summary>
    internal static async Task<bool> HandshakeAsync(DataPlaneConnection connection, byte[] hello, int peer, CancellationToken cancellationToken)
    {
        // Under TLS 1.3 the accepting side judges this node's certificate after the client's half of
        // the TLS handshake: a refused certificate shows only here, as a connection that ends.
        string refusedCertificate = connection.IsEncrypted
            ? " (it may have refused this node's TLS certificate: does it chain to the peer's CA?)"
            : "";
        var answer = new byte[TcpWireFormat.AnswerSize];
        bool answered;
        try
        {
            await connection.SendAllAsync(hello, cancellationToken).ConfigureAwait(false);
            answered = await connection.ReceiveExactlyAsync(answer, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (connection.IsEncrypted && e is AuthenticationException or IOException)
        {
            throw new AuthenticationException($"Peer {peer} ended the TLS connection during the data-plane handshake ({e.Message}){refusedCertificate}.", e);
        }

        if (!answered)
        {
            throw new IOException($"Peer {peer} closed the data-plane connection during the handshake without answering{refusedCertificate}.");
        }

        if (!TcpWireFormat.TryReadAnswer(answer, out int status))
        {
            throw new IOException($"Peer {peer} answered the data-plane handshake with bytes that are not this protocol.");
        }

        if (status == TcpWireFormat.AcceptedOverSharedMemory
            && TcpWireFormat.TryReadHello(hello, out var offered) && offered.OffersSharedMemory)
        {
            return true;
        }

        if (status != TcpWireFormat.Accepted)
        {
            var reason = (TcpRefusalReason)status;
            throw new TcpHandshakeRefusedException(reason, $"Peer {peer} refused the data-plane connection: {reason}.");
        }

        return false;
    }

    private async Task AcceptLoopAsync()
    {
        while (!closing.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptSocketAsync(closing.Token).ConfigureAwait(false);
            }
            catch (Exception) when (closing.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
            {
                // The listener was stopped under us: nothing more can connect.
                return;
            }
            catch (SocketException)
            {
                // A connection that died in the backlog (or a transient resource shortage): keep serving.
                try
                {
                    await Task.Delay(10, closing.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            _ = AdmitAsync(socket);
        }
    }

    /// <summary>The accepting side of the handshake. Never throws: whatever goes wrong closes the socket.</summary>
    private async Task AdmitAsync(Socket socket)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(closing.Token);
        timeout.CancelAfter(HandshakeTimeout);
        bool admitted = false;
        DataPlaneConnection? connection = null;
        try
        {
            socket.NoDelay = true;
            if (!FromHost(leftAddress, (socket.RemoteEndPoint as IPEndPoint)?.Address))
            {
                // Not even the left neighbour's machine: no handshake, no answer.
                Reject($"a connection from {socket.RemoteEndPoint}, not from the left neighbour's host {leftAddress}");
                return;
            }

            if (tls is null)
            {
                connection = DataPlaneConnection.Plain(socket);
            }
            else
            {
                try
                {
                    connection = await DataPlaneConnection.AcceptTlsAsync(socket, tls, timeout.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (e is AuthenticationException or IOException)
                {
                    Reject($"TLS handshake failed: {e.Message}");
                    return;
                }
            }

            var fixedPart = new byte[TcpWireFormat.HelloFixedSize];
            if (!await connection.ReceiveExactlyAsync(fixedPart, timeout.Token).ConfigureAwait(false))
            {
                Reject("closed before the handshake");
                return;
            }

            if (!TcpWireFormat.TryReadHello(fixedPart, out var hello))
            {
                // Not this protocol: do not talk back.
                Reject("not a data-plane handshake (bad magic)");
                return;
            }

            if (hello.Version != TcpWireFormat.ProtocolVersion)
            {
                await RefuseAsync(connection, TcpRefusalReason.UnsupportedVersion, $"protocol version {hello.Version}, expected {TcpWireFormat.ProtocolVersion}", timeout.Token)
                    .ConfigureAwait(false);
                return;
            }

            if (hello.TokenLength > MaxTokenBytes)
            {
                Reject($"token of {hello.TokenLength} bytes (at most {MaxTokenBytes})");
                return;
            }

            var offered = new byte[hello.TokenLength];
            if (offered.Length > 0 && !await connection.ReceiveExactlyAsync(offered, timeout.Token).ConfigureAwait(false))
            {
                Reject("closed during the handshake");
                return;
            }

            (string Name, byte[] Nonce)? offer = null;
            if (hello.OffersSharedMemory)
            {
                offer = await ReadOfferAsync(connection, timeout.Token).ConfigureAwait(false);
                if (offer is null)
                {
                    Reject("a malformed shared-memory offer");
                    return;
                }
            }

            if (hello.Generation != Generation)
            {
                await RefuseAsync(connection, TcpRefusalReason.WrongGeneration, $"generation {hello.Generation}, this ring is {Generation}", timeout.Token)
                    .ConfigureAwait(false);
                return;
            }

            if (PeerCount == 1 || hello.PeerIndex != LeftNeighbour)
            {
                await RefuseAsync(connection, TcpRefusalReason.UnexpectedPeer, $"peer {hello.PeerIndex} is not the left neighbour {LeftNeighbour}", timeout.Token)
                    .ConfigureAwait(false);
                return;
            }

            if (!CryptographicOperations.FixedTimeEquals(offered, token))
            {
                await RefuseAsync(connection, TcpRefusalReason.WrongToken, $"peer {hello.PeerIndex} sent a wrong token", timeout.Token).ConfigureAwait(false);
                return;
            }

            lock (gate)
            {
                if (incoming is null && !closing.IsCancellationRequested)
                {
                    incoming = connection;
                    admitted = true;
                }
            }

            if (!admitted)
            {
                await RefuseAsync(connection, TcpRefusalReason.AlreadyConnected, $"peer {hello.PeerIndex} is already connected", timeout.Token)
                    .ConfigureAwait(false);
                return;
            }

            var ring = offer is { } o ? OpenRing(o.Name, o.Nonce, socket.RemoteEndPoint as IPEndPoint) : null;
            var answer = new byte[TcpWireFormat.AnswerSize];
            TcpWireFormat.WriteAnswer(answer, ring is null ? TcpWireFormat.Accepted : TcpWireFormat.AcceptedOverSharedMemory);
            try
            {
                await connection.SendAllAsync(answer, timeout.Token).ConfigureAwait(false);
            }
            catch
            {
                ring?.Dispose();
                throw;
            }

            if (ring is not null)
            {
                connection = new SharedMemoryConnection(connection, ring);
                lock (gate)
                {
                    incoming = connection;
                    receivesOverSharedMemory = true;
                }
            }

            receiveLoop = ReceiveLoopAsync(connection);
            leftConnected.TrySetResult();
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or IOException or ObjectDisposedException or AuthenticationException)
        {
            if (admitted)
            {
                // The left neighbour was chosen but the answer did not reach it: the ring cannot form.
                FailReceiving(e);
                leftConnected.TrySetException(new IOException($"Accepting the left neighbour {LeftNeighbour} failed: {e.Message}", e));
            }
            else
            {
                Reject(closing.IsCancellationRequested ? "transport closing" : $"handshake failed ({e.Message})");
            }
        }
        finally
        {
            if (!admitted)
            {
                if (connection is not null)
                {
                    connection.Close();
                }
                else
                {
                    SocketIo.Close(socket);
                }
            }
        }
    }

    /// <summary>The shared-memory offer after the token: its ring's name and nonce, or null when it is malformed.</summary>
    private static async Task<(string Name, byte[] Nonce)?> ReadOfferAsync(DataPlaneConnection connection, CancellationToken cancellationToken)
    {
        var length = new byte[1];
        if (!await connection.ReceiveExactlyAsync(length, cancellationToken).ConfigureAwait(false)
            || length[0] is 0 or > TcpWireFormat.MaxSharedMemoryNameLength)
        {
            return null;
        }

        var rest = new byte[length[0] + SharedMemoryRing.NonceSize];
        if (!await connection.ReceiveExactlyAsync(rest, cancellationToken).ConfigureAwait(false) || !System.Text.Ascii.IsValid(rest.AsSpan(0, length[0])))
        {
            return null;
        }

        return (System.Text.Encoding.ASCII.GetString(rest, 0, length[0]), rest[length[0]..]);
    }

    /// <summary>
    /// The reader's side of an offered ring: mapped when this transport allows shared memory, the left neighbour
    /// connected from this host and the file is the one offered; otherwise null (noted), and the hop stays on the socket.
    /// </summary>
    private SharedMemoryRing? OpenRing(string name, byte[] nonce, IPEndPoint? from)
    {
        if (!sharedMemory)
        {
            return null;
        }

        if (!IsThisHost(from?.Address))
        {
            Note($"peer {LeftNeighbour} offered shared memory from {from}, which is not this host; its frames come over the socket");
            return null;
        }

        var ring = SharedMemoryRing.TryOpen(name, nonce, out var problem);
        if (ring is null)
        {
            Note($"peer {LeftNeighbour} offered a shared-memory ring this process cannot use ({problem}); its frames come over the socket");
        }

        return ring;
    }

    /// <summary>
    /// Whether a connection from <paramref name="actual"/> can come from a peer listening on
    /// <paramref name="expected"/>: the same address (IPv4-mapped IPv6 read as IPv4), any loopback
    /// address for a loopback one, and any address for a peer listening on all of them.
    /// </summary>
    internal static bool FromHost(IPAddress expected, IPAddress? actual)
    {
        if (actual is null)
        {
            return false;
        }

        if (expected.Equals(IPAddress.Any) || expected.Equals(IPAddress.IPv6Any))
        {
            return true;
        }

        var e = expected.IsIPv4MappedToIPv6 ? expected.MapToIPv4() : expected;
        var a = actual.IsIPv4MappedToIPv6 ? actual.MapToIPv4() : actual;
        return e.Equals(a) || (IPAddress.IsLoopback(e) && IPAddress.IsLoopback(a));
    }

    /// <summary>Chunks dropped because the left neighbour's held bytes would have exceeded the bound.</summary>
    public long PendingLimitDropped => mailbox.LimitDropped;

    private async Task RefuseAsync(DataPlaneConnection connection, TcpRefusalReason reason, string detail, CancellationToken cancellationToken)
    {
        Reject($"{reason}: {detail}");
        var answer = new byte[TcpWireFormat.AnswerSize];
        TcpWireFormat.WriteAnswer(answer, (int)reason);
        await connection.SendAllAsync(answer, cancellationToken).ConfigureAwait(false);
    }

    private void Reject(string reason)
    {
        Interlocked.Increment(ref rejectedConnections);
        lock (gate)
        {
            lastRejection = reason;
        }
    }

    /// <summary>Reads frames from the left neighbour into the mailbox until the connection ends. Never throws.</summary>
    private async Task ReceiveLoopAsync(DataPlaneConnection connection)
    {
        var header = new byte[TcpWireFormat.FrameHeaderSize];
        var payloadView = new FloatBytes();
        try
        {
            while (true)
            {
                if (!await connection.ReceiveExactlyAsync(header, closing.Token).ConfigureAwait(false))
                {
                    FailReceiving(new IOException($"peer {LeftNeighbour} closed the connection"));
                    return;
                }

                var frame = TcpWireFormat.ReadFrameHeader(header);
                string? problem = frame.Magic != TcpWireFormat.FrameMagic
                    ? "bad frame magic"
                    : TcpWireFormat.Problem(frame.Key, frame.ElementCount, Generation, PeerCount, MaxChunkElements);
                if (problem is not null)
                {
                    Interlocked.Increment(ref droppedFrames);
                    FailReceiving(new InvalidDataException($"malformed frame from peer {LeftNeighbour}: {problem}; connection closed"));
                    return;
                }

                // The floats are read straight into a pooled array the mailbox hands to the receive;
                // the slice keeps the chunk's exact length.
                ReadOnlyMemory<float> data = ReadOnlyMemory<float>.Empty;
                if (frame.ElementCount > 0)
                {
                    data = buffers.Rent(frame.ElementCount).AsMemory(0, frame.ElementCount);
                    bool complete = false;
                    try
                    {
                        complete = await connection.ReceiveExactlyAsync(payloadView.Over(data), closing.Token).ConfigureAwait(false);
                    }
                    finally
                    {
                        payloadView.Clear();
                        if (!complete)
                        {
                            buffers.Return(data);
                        }
                    }

                    if (!complete)
                    {
                        throw new EndOfStreamException($"peer {LeftNeighbour} closed the connection inside a frame");
                    }
                }

                Interlocked.Add(ref bytesReceived, TcpWireFormat.FrameHeaderSize + ((long)data.Length * sizeof(float)));

                // A chunk the mailbox refuses has gone back to the pool through its discard callback.
                if (!mailbox.Deliver(LeftNeighbour, frame.Key, data))
                {
                    Interlocked.Increment(ref droppedFrames);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or IOException or ObjectDisposedException)
        {
            if (e is EndOfStreamException)
            {
                // Cut off part way through a frame: that frame is lost.
                Interlocked.Increment(ref droppedFrames);
            }

            FailReceiving(closing.IsCancellationRequested ? new ObjectDisposedException(nameof(TcpRingTransport)) : e);
        }
        finally
        {
            connection.Close();
        }
    }

    private void RequirePeer(int peer)
    {
        if ((uint)peer >= (uint)PeerCount)
        {
            throw new ArgumentOutOfRangeException(nameof(peer), peer, $"Peer must be in 0..{PeerCount - 1}.");
        }
    }
}
