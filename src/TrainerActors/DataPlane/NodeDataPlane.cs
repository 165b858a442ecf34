using System.Net;
using System.Net.Sockets;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.Cluster.Transport;
using ActorTrain.Sync.Transport;
using ActorTrain.Sync.Transport.Tcp;
using Akka.Actor;

namespace ActorTrain.TrainerActors.DataPlane;

/// <summary>
/// A node's data plane: the one place that opens what carries gradients between nodes. It owns
/// the TCP listener, resolves the peers' data-plane hosts, connects the TCP ring, and resolves the
/// Akka gradient endpoints of the other nodes — each only when the world's transport needs it (with
/// tcp no Akka endpoint is resolved; with akka no TCP connection is made). For each generation it
/// hands the node actor a ready ring transport (null on a world of one node) by message
/// (<see cref="RingReady"/>), and closes what it opened when the generation ends.
/// <para>Used from the node actor's thread only; the connecting tasks touch only what they were given.</para>
/// </summary>
internal sealed class NodeDataPlane : IDisposable
{
    private readonly ActorSystem _system;
    private readonly SyncSettings _sync;
    private readonly IActorRef _endpoint;
    private readonly ChunkMailbox _mailbox;
    private readonly NodeMetrics _metrics;
    private readonly string _advertisedHost;
    private TcpListener? _listener;
    private TcpRingTransport? _tcp;
    private CrossNodeTransport? _transport;
    private Reported _reported;

    /// <summary>
    /// The data plane of the node actor whose context is <paramref name="context"/>: its Akka gradient
    /// endpoint (a child of that actor, fed into a bounded chunk mailbox) and its TCP listener.
    /// </summary>
    public static NodeDataPlane Open(IUntypedActorContext context, SyncSettings sync, NodeMetrics metrics)
    {
        var mailbox = new ChunkMailbox(sync.MaxPendingChunkBytes);
        var endpoint = context.ActorOf(GradientEndpointActor.Props(mailbox, sync.ChunkSizeBytes, metrics), GradientEndpointActor.Name);
        return new NodeDataPlane(context.System, sync, endpoint, mailbox, metrics);
    }

    /// <summary>Opens the TCP listener on the address Akka remoting binds: the seed chooses the transport, and tells it only with the world.</summary>
    public NodeDataPlane(ActorSystem system, SyncSettings sync, IActorRef endpoint, ChunkMailbox mailbox, NodeMetrics metrics)
    {
        _system = system;
        _sync = sync;
        _endpoint = endpoint;
        _mailbox = mailbox;
        _metrics = metrics;
        _advertisedHost = ((ExtendedActorSystem)system).Provider.DefaultAddress.Host ?? "127.0.0.1";
        Listen();
    }

    /// <summary>The Akka gradient endpoint's path as other nodes reach it.</summary>
    public string EndpointPath => _endpoint.Path.ToStringWithAddress(((ExtendedActorSystem)_system).Provider.DefaultAddress);

    /// <summary>host:port of this node's TCP listener, as registrations and halt reports offer it.</summary>
    public string Endpoint { get; private set; } = "";

    /// <summary>
    /// Sets the ring of world <paramref name="w"/> up, in which this node is <paramref name="index"/>,
    /// and tells <paramref name="node"/> a <see cref="RingReady"/> when it stands or failed.
    /// </summary>
    public void Connect(WorldAssignment w, int index, IActorRef node, CancellationToken generationEnded)
    {
        var transport = CrossNodeTransports.Parse(w.Plan.Transport, $"world generation {w.Generation}");
        _transport = transport;
        // The previous generation's rings are over; its chunks can no longer be used.
        _mailbox.DropGenerationsBefore(w.Generation);
        // Which addresses may send Akka chunks in this generation: every other one is a stranger.
        _endpoint.Tell(new GradientEndpointActor.SetWorld(w.Generation, w.Nodes.Select(n => ActorPath.Parse(n.EndpointPath).Address).ToArray(),
            transport == CrossNodeTransport.Akka ? w.Plan.ChunkSizeBytes : 0));
        if (transport == CrossNodeTransport.Akka) CloseListener();
        Task<IRingTransport?> ring = w.Nodes.Length == 1 ? Task.FromResult<IRingTransport?>(null)
            : transport == CrossNodeTransport.Tcp ? ConnectTcp(w, index, generationEnded)
            : ConnectAkka(w, index);
        ring.PipeTo(node, success: r => new RingReady(w.Generation, index, r, null),
            failure: e => new RingReady(w.Generation, index, null, Reason(e)));
    }

    /// <summary>The ring of the current generation (called with what <see cref="RingReady"/> brought, once the node uses it).</summary>
    public void Adopt(IRingTransport? ring) => _tcp = ring as TcpRingTransport;

    /// <summary>
    /// How the adopted ring's hops travel, for the generation's line: over TCP or shared memory, and why a hop on
    /// this host could not use shared memory; null for a ring that is not the TCP transport's.
    /// </summary>
    public string? CrossNodeMedium()
    {
        if (_tcp is not { } t) return null;
        string to = t.SendsOverSharedMemory ? "shared memory" : "TCP", from = t.ReceivesOverSharedMemory ? "shared memory" : "TCP";
        var hops = to == from ? $"cross-node over {to}" : $"cross-node to peer {t.RightNeighbour} over {to}, from peer {t.LeftNeighbour} over {from}";
        return t.SharedMemoryNote is { } note ? $"{hops} ({note})" : hops;
    }

    /// <summary>A ring the node does not use (its generation was superseded while it connected).</summary>
    public static void Discard(IRingTransport? ring)
    {
        if (ring is IAsyncDisposable d) d.DisposeAsync().AsTask().Wait(DisposeWait);
    }

    /// <summary>Ends the generation's ring: its counts reach the metrics, its connections close.</summary>
    public void CloseGeneration()
    {
        if (_tcp is null) return;
        ReportBytes();
        Discard(_tcp);
        _tcp = null;
        _reported = default;
    }

    /// <summary>Listens again for the next generation's ring, when its transport is tcp. Throws naming the port when it cannot.</summary>
    public void ListenForNextGeneration()
    {
        if (_listener is null && _transport != CrossNodeTransport.Akka) Listen();
    }

    /// <summary>The TCP transport counts its own bytes and refusals; the metrics get the difference since the last report.</summary>
    public void ReportBytes()
    {
        if (_tcp is null) return;
        var now = new Reported(_tcp.BytesSent, _tcp.BytesReceived, _tcp.PendingLimitDropped, _tcp.DroppedFrames, _tcp.RejectedConnections);
        _metrics.AddBytes(TransportLabel.Tcp, sent: true, now.Sent - _reported.Sent);
        _metrics.AddBytes(TransportLabel.Tcp, sent: false, now.Received - _reported.Received);
        _metrics.Dropped(DropReason.PendingLimit, now.Limit - _reported.Limit);
        // Frames dropped for the pending bound are counted above; the rest are other refusals.
        _metrics.Dropped(DropReason.DroppedFrame, now.Frames - now.Limit - (_reported.Frames - _reported.Limit));
        _metrics.Dropped(DropReason.RejectedConnection, now.Rejected - _reported.Rejected);
        _reported = now;
    }

    /// <summary>Whether a broken generation's trainer error is the TCP ring's (then its neighbours are named).</summary>
    public bool UsesTcp => _tcp is not null;

    /// <summary>The ring neighbour whose connection failed, when the TCP transport knows; "" otherwise.</summary>
    public string SuspectNeighbour(WorldAssignment? w) =>
        w is null || _tcp is null ? "" : w.Nodes[_tcp.ReceiveFaulted ? _tcp.LeftNeighbour : _tcp.RightNeighbour].NodeName;

    public string NeighbourNames(WorldAssignment? w) =>
        w is null || _tcp is null ? "unknown" : $"left {w.Nodes[_tcp.LeftNeighbour].NodeName}, right {w.Nodes[_tcp.RightNeighbour].NodeName}";

    public void Dispose()
    {
        CloseListener();
        if (_tcp is not null) Discard(_tcp);
        _tcp = null;
    }

    private void Listen()
    {
        var bindHost = _system.Settings.Config.GetString("akka.remote.dot-netty.tcp.hostname", "127.0.0.1");
        try
        {
            var ip = IPAddress.TryParse(bindHost, out var parsed) ? parsed
                : Dns.GetHostAddresses(bindHost).FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? IPAddress.Loopback;
            _listener = TcpRingTransport.Listen(ip, _sync.TcpPort);
            Endpoint = $"{_advertisedHost}:{((IPEndPoint)_listener.LocalEndpoint).Port}";
        }
        catch (Exception e) when (e is SocketException or ArgumentException)
        {
            throw new InvalidOperationException(
                $"cannot open the TCP data-plane port {bindHost}:{_sync.TcpPort} ({e.Message}); set actortrain.sync.tcp-port to a free port", e);
        }
    }

    private void CloseListener()
    {
        _listener?.Stop();
        _listener = null;
    }

    /// <summary>Connects to the ring neighbours' listeners; the transport owns this node's listener from here on.</summary>
    private Task<IRingTransport?> ConnectTcp(WorldAssignment w, int index, CancellationToken generationEnded)
    {
        var listener = _listener ?? throw new InvalidOperationException("the data-plane listener is not open");
        _listener = null;
        return ConnectTcpAsync(new TcpRing(w, index, listener, Cluster.Security.NodeTls.Of(_system)?.DataPlane, _sync.MaxPendingChunkBytes, _sync.SharedMemory),
            generationEnded);
    }

    private sealed record TcpRing(WorldAssignment World, int Index, TcpListener Listener, TcpTlsOptions? Tls, long MaxPendingBytes, bool SharedMemory);

    private static async Task<IRingTransport?> ConnectTcpAsync(TcpRing ring, CancellationToken generationEnded)
    {
        var w = ring.World;
        try
        {
            var peers = new List<IPEndPoint>();
            foreach (var n in w.Nodes) peers.Add(await ResolveHostAsync(n.DataPlaneEndpoint, n.NodeName).ConfigureAwait(false));
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(generationEnded);
            timeout.CancelAfter(ConnectTimeout);
            return await TcpRingTransport.ConnectAsync(ring.Index, peers, ring.Listener, w.Generation, w.Plan.DataPlaneToken,
                Math.Max(1, w.Plan.ChunkSizeBytes / sizeof(float)), timeout.Token, ring.Tls, ring.MaxPendingBytes, ring.SharedMemory).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            ring.Listener.Stop();
            throw new DataPlaneException($"cannot connect the TCP data plane of generation {w.Generation}: the ring neighbours did not connect " +
                $"within {ConnectTimeout.TotalSeconds:0} s (is actortrain.sync.tcp-port open between the nodes?)");
        }
        catch (Exception e)
        {
            ring.Listener.Stop();
            throw new DataPlaneException($"cannot connect the TCP data plane of generation {w.Generation}: {Reason(e)}", e);
        }
    }

    internal static async Task<IPEndPoint> ResolveHostAsync(string hostAndPort, string nodeName)
    {
        var colon = hostAndPort.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(hostAndPort[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture, out var port))
            throw new InvalidOperationException($"node {nodeName} sent a malformed data-plane address \"{hostAndPort}\"");
        var host = hostAndPort[..colon];
        if (IPAddress.TryParse(host, out var ip)) return new IPEndPoint(ip, port);
        var addresses = await Dns.GetHostAddressesAsync(host).ConfigureAwait(false);
        var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.FirstOrDefault()
            ?? throw new InvalidOperationException($"cannot resolve {host}, the data-plane host of node {nodeName}");
        return new IPEndPoint(chosen, port);
    }

    /// <summary>Resolves every node's Akka gradient endpoint (with retries) and builds the Akka ring over them.</summary>
    private Task<IRingTransport?> ConnectAkka(WorldAssignment w, int index)
    {
        var deadline = DateTime.UtcNow + EndpointResolveTimeout;
        var (mailbox, metrics, system) = (_mailbox, _metrics, _system);
        return ConnectAkkaAsync();

        async Task<IRingTransport?> ConnectAkkaAsync()
        {
            try
            {
                var endpoints = await Task.WhenAll(w.Nodes.Select(n => ResolveEndpointAsync(system.ActorSelection(n.EndpointPath), n.EndpointPath, deadline)))
                    .ConfigureAwait(false);
                return new AkkaRingTransport(index, endpoints, mailbox, w.Plan.ChunkSizeBytes, metrics);
            }
            catch (Exception e)
            {
                throw new DataPlaneException($"cannot reach the gradient endpoints of the world's nodes: {Reason(e)}", e);
            }
        }
    }

    /// <summary>
    /// Resolves one node's gradient endpoint, trying again until <paramref name="deadline"/>: a node that
    /// has just registered can be briefly unresolvable (its association still being set up, or gated for a
    /// moment), and that must not end the run. Fails naming the path and the last cause.
    /// </summary>
    internal static async Task<IActorRef> ResolveEndpointAsync(ActorSelection selection, string path, DateTime deadline)
    {
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            try
            {
                return await selection.ResolveOne(left > EndpointResolveRetry ? left : EndpointResolveRetry).ConfigureAwait(false);
            }
            catch (ActorNotFoundException) when (DateTime.UtcNow + EndpointResolveRetry < deadline)
            {
                await Task.Delay(EndpointResolveRetry).ConfigureAwait(false);
            }
            catch (ActorNotFoundException e)
            {
                throw new ActorNotFoundException($"{path}: {e.InnerException?.Message ?? e.Message}", e);
            }
        }
    }

    /// <summary>The message of the exception itself, out of the aggregate a task wraps it in.</summary>
    private static string Reason(Exception e) => e is AggregateException { InnerExceptions.Count: > 0 } a ? Reason(a.InnerExceptions[0]) : e.Message;

    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan EndpointResolveTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan EndpointResolveRetry = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan DisposeWait = TimeSpan.FromSeconds(2);

    private readonly record struct Reported(long Sent, long Received, long Limit, long Frames, long Rejected);
}

/// <summary>The data plane → its node: the ring of <see cref="Generation"/> stands (<see cref="Ring"/>, null on one node), or <see cref="Error"/> says why not.</summary>
internal sealed record RingReady(long Generation, int Index, IRingTransport? Ring, string? Error);

/// <summary>A generation's ring could not be set up; the message names what and where.</summary>
internal sealed class DataPlaneException(string message, Exception? inner = null) : Exception(message, inner);
