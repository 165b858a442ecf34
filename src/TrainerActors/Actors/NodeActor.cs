using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.Cluster.Transport;
using ActorTrain.Sync;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Transport;
using ActorTrain.Sync.Transport.Tcp;
using System.Net;
using System.Net.Sockets;
using ActorTrain.TrainerActors.Checkpoints;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Reporting;
using ActorTrain.Cluster.Logging;
using ActorTrain.TrainerActors.Torch;
using ActorTrain.TrainerActors.Hosting;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// One per process. Finds the devices, spawns one trainer per device (per GPU, or
/// trainers-per-node CPU trainers), owns the node's intra-node collective and its gradient
/// endpoint, registers with the coordinator and relays the run's phases to its trainers.
/// </summary>
public sealed class NodeActor : ReceiveActor, IWithTimers
{
    private readonly ActorTrainSettings _settings;
    private readonly TrainingJob _job;
    private readonly IActorRef _coordinator;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ChunkMailbox _mailbox;
    private readonly NodeMetrics _metrics;
    private readonly IProgressSink _display;
    private int _ticks;
    private long _stepsAtLastStatus;
    private DateTime _lastStatusAt;
    private readonly HashSet<Address> _upMembers = [];
    private readonly List<IActorRef> _trainers = [];
    private readonly Dictionary<int, TrainerReady> _ready = [];
    private readonly Dictionary<int, object> _collected = [];
    private readonly CancellationTokenSource _runCancelled = new();
    private CancellationTokenSource _generationCancelled = new();
    private long _haltingFor = -1;
    private readonly Dictionary<int, TrainerHaltState> _halted = [];
    private NodeHalted? _lastHalted;
    private bool _brokenReported;
    private bool _intraNodeUsed;
    private IntraNodeBackend _intraNodeBackend;
    private bool _devicesAreCuda;
    private RunHistory _history = RunHistory.Empty;
    private bool _rejoinPending;
    private NodeRejoin? _rejoin;
    private ITrainerCheckpoints? _checkpoints;
    private CheckpointOffer? _offer;
    private readonly HashSet<Address> _seedsUp = [];
    private TrainerProgress[] _progress = [];
    private int _epoch;
    private IActorRef _endpoint = ActorRefs.Nobody;
    private IActorRef _coordinatorRef = ActorRefs.Nobody;
    private WorldAssignment? _world;
    private IIntraNodeCollective? _intraNode;
    private TcpListener? _dataPlaneListener;
    private string _dataPlaneEndpoint = "";
    private TcpRingTransport? _dataPlane;
    private long _tcpSentReported;
    private long _tcpReceivedReported;
    private string _nodeName = "";
    private bool _ending;
    private readonly NodeSession _session;
    // Quorum as this node sees it: members the failure detector marks unreachable, and members that
    // left the cluster on their own (they no longer count).
    private readonly HashSet<Address> _unreachable = [];
    private readonly HashSet<Address> _departed = [];
    private bool _quorumLost;

    public ITimerScheduler Timers { get; set; } = null!;

    public NodeActor(ActorTrainSettings settings, TrainingJob job, IActorRef coordinator, NodeMetrics metrics, IProgressSink display, NodeSession? session = null)
    {
        _session = session ?? new NodeSession();
        _metrics = metrics;
        _display = display;
        _settings = settings;
        _job = job;
        _coordinator = coordinator;
        _mailbox = new ChunkMailbox(settings.Sync.MaxPendingChunkBytes);
        Starting();
    }

    public static Props Props(ActorTrainSettings settings, TrainingJob job, IActorRef coordinator, NodeMetrics metrics, IProgressSink display,
        NodeSession? session = null) =>
        Akka.Actor.Props.Create(() => new NodeActor(settings, job, coordinator, metrics, display, session));

    private int LocalSize => _trainers.Count;

    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(0, TimeSpan.Zero, e =>
        {
            // A trainer that throws has a replica in an unknown state: the run cannot go on.
            // One released from a collective because the run is ending is no failure of its own.
            if (e is not TrainingCancelledException)
                Self.Tell(new LocalFailure(e switch
                {
                    TimeoutException => e.Message,
                    IOException when _dataPlane is not null => $"lost the TCP data plane to a ring neighbour ({NeighbourNames()}): {e.Message}",
                    _ => $"{e.GetType().Name}: {e.Message}",
                }));
            return Directive.Stop;
        });

    protected override void PreStart()
    {
        var selfAddress = _cluster.SelfAddress;
        _nodeName = string.IsNullOrEmpty(_settings.NodeName) ? $"{selfAddress.Host}:{selfAddress.Port}" : _settings.NodeName;
        // However the process is asked to stop, release trainers blocked in a collective first:
        // a pinned trainer stuck waiting for a dead peer would otherwise hold up the shutdown.
        var runCancelled = _runCancelled;
        CoordinatedShutdown.Get(Context.System).AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "cancel-training", () =>
        {
            runCancelled.Cancel();
            return Task.FromResult(Akka.Done.Instance);
        });
        try
        {
            StartNode(selfAddress);
        }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or ArgumentException or SocketException)
        {
            // A node that cannot start (port taken, no CUDA, no NCCL…) says why and ends the
            // process instead of restarting into the same error.
            Console.Error.WriteLine($"error: node {_nodeName} cannot start: {e.Message}");
            EndLocally(2, $"cannot start: {e.Message}");
        }
    }

    private void StartNode(Address selfAddress)
    {
        _endpoint = Context.ActorOf(GradientEndpointActor.Props(_mailbox, _settings.Sync.ChunkSizeBytes, _metrics), GradientEndpointActor.Name);
        OpenDataPlaneListener(selfAddress);
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.ReachableMember));

        if (!TorchRuntime.TrySetMkldnn(_settings.MkldnnEnabled, out var detail))
            _log.Warning("Cannot switch oneDNN {0}: {1}", _settings.MkldnnEnabled ? "on" : "off", detail);
        if (!TorchRuntime.TrySetNnpack(_settings.NnpackEnabled, out var nnpackDetail))
            _log.Warning("Cannot switch NNPACK {0}: {1}", _settings.NnpackEnabled ? "on" : "off", nnpackDetail);

        var devices = ChooseDevices();
        // The intra-node collective depends on this node's devices only: choose it now, so an
        // impossible choice (nccl without CUDA) is a start-up error rather than a failed world.
        var devicesAreCuda = devices.Any(d => d.type == DeviceType.CUDA);
        var intra = IntraNodeCollectives.Select(IntraNodeCollectives.Parse(_settings.Sync.IntraNode, "actortrain.sync.intra-node"), devices.Count, devicesAreCuda, _settings.Sync.NcclLibrary);
        _intraNode = intra.Collective;
        _intraNodeBackend = intra.Backend;
        _devicesAreCuda = devicesAreCuda;
        if (devicesAreCuda) ProgressLine.Info("Node {0}: intra-node collective {1} ({2})", _nodeName, intra.Collective.Name, intra.Reason);
        else _log.Info("Intra-node collective: {0} ({1})", intra.Collective.Name, intra.Reason);
        // Until the world tells how many trainers share this machine, assume only this node's.
        var threads = _settings.Node.EffectiveIntraOpThreads(devices.Count);
        for (var i = 0; i < devices.Count; i++)
            _trainers.Add(Context.ActorOf(TrainerActor.Props(_job, i, devices[i], threads, _settings.Sync.BucketSizeBytes, _settings.Training.Seed, _settings.Sync.OverlapBackward,
                _settings.Sync.BroadcastBuffers), $"trainer-{i}"));
        foreach (var t in _trainers) Context.Watch(t);
        ProgressLine.Info("Node {0}: {1} trainer(s) on {2}, oneDNN {3}", _nodeName, devices.Count,
            string.Join(",", devices.Select(d => d.ToString())), _settings.MkldnnEnabled ? "on" : "off");
    }

    protected override void PostStop()
    {
        _runCancelled.Cancel();
        _cluster.Unsubscribe(Self);
        _intraNode?.Dispose();
        _dataPlaneListener?.Stop();
        _dataPlane?.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(2));
    }

    /// <summary>
    /// The TCP data plane listens on the address Akka remoting binds; whether it is used is the
    /// seed's choice (actortrain.sync.transport), made known with the world.
    /// </summary>
    private void OpenDataPlaneListener(Address selfAddress)
    {
        var bindHost = Context.System.Settings.Config.GetString("akka.remote.dot-netty.tcp.hostname", "127.0.0.1");
        try
        {
            var ip = IPAddress.TryParse(bindHost, out var parsed) ? parsed
                : Dns.GetHostAddresses(bindHost).FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? IPAddress.Loopback;
            _dataPlaneListener = TcpRingTransport.Listen(ip, _settings.Sync.TcpPort);
            _dataPlaneEndpoint = $"{selfAddress.Host}:{((IPEndPoint)_dataPlaneListener.LocalEndpoint).Port}";
        }
        catch (Exception e) when (e is SocketException or ArgumentException)
        {
            throw new InvalidOperationException(
                $"cannot open the TCP data-plane port {bindHost}:{_settings.Sync.TcpPort} ({e.Message}); set actortrain.sync.tcp-port to a free port", e);
        }
    }

    private List<Device> ChooseDevices()
    {
        var cuda = _settings.Node.Device switch
        {
            DeviceKind.Cuda => TorchRuntime.CudaAvailable() ? true : throw new InvalidOperationException(
                "actortrain.node.device = cuda, but TorchSharp finds no CUDA device (the default build uses the CPU package; see README, \"CUDA build\")"),
            DeviceKind.Auto => TorchRuntime.CudaAvailable(),
            _ => false,
        };
        return cuda
            ? Enumerable.Range(0, TorchSharp.torch.cuda.device_count()).Select(i => new Device(DeviceType.CUDA, i)).ToList()
            : Enumerable.Range(0, _settings.Node.TrainersPerNode).Select(_ => new Device(DeviceType.CPU)).ToList();
    }

    private void Starting()
    {
        Receive<TrainerReady>(r =>
        {
            _ready[r.LocalRank] = r;
            if (_ready.Count < LocalSize) return;
            var fingerprints = _ready.Values.Select(x => x.Fingerprint).Distinct().ToList();
            if (fingerprints.Count != 1) { Fail("the trainers of this node built different models"); return; }
            if (!PrepareCheckpoints(fingerprints[0])) return;
            Register();
            Timers.StartPeriodicTimer("register", RetryRegistration.Instance, _settings.RegistrationInterval);
            if (_settings.StartupTimeout > TimeSpan.Zero)
                Timers.StartSingleTimer("unanswered", RegistrationUnanswered.Instance, _settings.StartupTimeout);
        });
        Receive<RetryRegistration>(_ => Register());
        Receive<RegistrationUnanswered>(_ =>
        {
            if (_session.Rejoining)
            {
                Console.Error.WriteLine($"error: node {_nodeName}: could not rejoin the cluster within {_settings.StartupTimeout.TotalSeconds:0}s (actortrain.elastic.rejoin-timeout)");
                EndLocally(3, "could not rejoin the cluster");
                return;
            }
            var seeds = string.Join(", ", Context.System.Settings.Config.GetStringList("akka.cluster.seed-nodes"));
            Console.Error.WriteLine($"error: node {_nodeName}: no coordinator answered within {_settings.StartupTimeout.TotalSeconds:0}s " +
                $"(actortrain.startup-timeout); is a seed node of job \"{_settings.JobId}\" running at {(seeds.Length > 0 ? seeds : "the configured seed nodes")}?");
            EndLocally(2, "no coordinator answered");
        });
        Receive<NodeRegistered>(r =>
        {
            Timers.Cancel("register");
            Timers.Cancel("unanswered");
            _coordinatorRef = Sender;
            ProgressLine.Info("Registered with the coordinator as {0}; {1}/{2} node(s) so far", r.NodeName, r.NodesRegistered, r.MinNodes);
        });
        Receive<RegistrationRefused>(r =>
        {
            Timers.Cancel("register");
            Timers.Cancel("unanswered");
            _log.Error("The coordinator refused this node: {0}", r.Reason);
            Console.Error.WriteLine($"error: the coordinator refused node {_nodeName}: {r.Reason}");
            // Coming back after being left out is no configuration error: the run went on without it.
            EndLocally(_session.Rejoining ? 3 : 2, $"refused: {r.Reason}");
        });
        Receive<WorldAssignment>(OnWorld);
        Receive<EndpointsResolved>(OnEndpointsResolved);
        Receive<DataPlaneConnected>(OnDataPlaneConnected);
        Common();
    }

    /// <summary>Where rank 0 writes checkpoints; with --resume, the newest valid one to offer. False when the node cannot start.</summary>
    private bool PrepareCheckpoints(string fingerprint)
    {
        var c = _settings.Checkpoint;
        _checkpoints = new TrainerCheckpoints(new CheckpointStore(c.ResolveDir(_settings.Training.OutDir), c.Keep), c, _settings.JobId, fingerprint,
            () => (_history, _world?.WorldSize ?? 0, _world?.Plan.Seed ?? _settings.Training.Seed));
        if (c.ResumeFrom.Length == 0) return true;
        try
        {
            _offer = TrainerCheckpoints.Offer(c.ResumeFrom, _settings.JobId, fingerprint, warning =>
            {
                _log.Warning("{0}", warning);
                Console.Error.WriteLine($"warning: {warning}");
            });
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: node {_nodeName} cannot resume: {e.Message}");
            EndLocally(2, $"cannot resume: {e.Message}");
            return false;
        }
        if (_offer is null)
            ProgressLine.Info("Node {0}: no valid checkpoint in {1}; this node offers none", _nodeName, c.ResumeFrom);
        else
            ProgressLine.Info("Node {0}: offering checkpoint {1} (step {2}, epoch {3})", _nodeName, _offer.File, _offer.Position.GlobalStep, _offer.Position.Epoch);
        return true;
    }

    private void Register()
    {
        var address = _cluster.SelfAddress;
        var devices = _ready.Values.OrderBy(r => r.LocalRank).Select(r => r.Device).ToArray();
        _coordinator.Tell(new RegisterNode(_settings.JobId, ActorTrainSettings.ProtocolVersion, _ready[0].Fingerprint, _nodeName,
            LocalSize, Self.Path.ToStringWithAddress(address), _endpoint.Path.ToStringWithAddress(address), devices, _dataPlaneEndpoint, _rejoin, _world is null ? _offer : null));
    }

    private void OnWorld(WorldAssignment w)
    {
        _coordinatorRef = Sender;
        Timers.Cancel("register");
        Timers.Cancel("unanswered");
        if (_world is not null && w.Generation <= _world.Generation) return;
        var index = Array.FindIndex(w.Nodes, n => n.NodeName == _nodeName);
        if (index < 0) { Fail($"world generation {w.Generation} does not include this node"); return; }
        // The previous generation's rings are over; its chunks can no longer be used.
        _generationCancelled.Cancel();
        _generationCancelled = CancellationTokenSource.CreateLinkedTokenSource(_runCancelled.Token);
        _mailbox.DropGenerationsBefore(w.Generation);
        _brokenReported = false;
        _collected.Clear();
        _rejoin = null;
        Timers.Cancel("register");
        CloseDataPlane();
        _world = w;
        _history = w.History;
        _quorumLost = false;
        _session.Peers = w.Nodes.Select(n => Quorum.AddressOf(n.NodeActorPath)?.ToString()).OfType<string>().ToArray();
        Become(Training);
        var self = Self;
        var deadline = DateTime.UtcNow + EndpointResolveTimeout;
        Task.WhenAll(w.Nodes.Select(n => ResolveEndpointAsync(Context.ActorSelection(n.EndpointPath), n.EndpointPath, deadline)))
            .ContinueWith(t => t.IsCompletedSuccessfully
                ? new EndpointsResolved(w.Generation, index, t.Result, null)
                : new EndpointsResolved(w.Generation, index, [], t.Exception?.GetBaseException().Message ?? "cancelled"))
            .PipeTo(self);
    }

    private static readonly TimeSpan EndpointResolveTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan EndpointResolveRetry = TimeSpan.FromMilliseconds(250);

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

    /// <summary>A generation the coordinator already ended (a regroup while the node was still setting it up) never starts.</summary>
    private bool Superseded(long generation) => generation != _world!.Generation || _haltingFor > generation;

    private void OnEndpointsResolved(EndpointsResolved r)
    {
        var w = _world!;
        if (Superseded(r.Generation)) return;
        if (r.Error is not null) { Fail($"cannot reach the gradient endpoints of the world's nodes: {r.Error}"); return; }
        // Akka chunks are as large as the seed says (its chunk-size may differ from this node's).
        _endpoint.Tell(new GradientEndpointActor.SetWorld(w.Generation, w.Nodes.Select(n => ActorPath.Parse(n.EndpointPath).Address).ToArray(),
            w.Plan.Transport == "akka" ? w.Plan.ChunkSizeBytes : 0));

        if (w.Plan.Transport == "tcp" && w.Nodes.Length > 1)
        {
            // Connect to the ring neighbours' data-plane listeners; training starts once both stand.
            var self = Self;
            var listener = _dataPlaneListener ?? throw new InvalidOperationException("the data-plane listener is not open");
            _dataPlaneListener = null; // the transport owns it from here on
            ConnectDataPlane(w, r.Index, listener, Cluster.Security.NodeTls.Of(Context.System)?.DataPlane, _settings.Sync.MaxPendingChunkBytes, _generationCancelled.Token).ContinueWith(t => t.IsCompletedSuccessfully
                    ? new DataPlaneConnected(w.Generation, r.Index, t.Result, null)
                    : new DataPlaneConnected(w.Generation, r.Index, null, t.Exception?.GetBaseException().Message
                        ?? "the ring neighbours did not connect within 30 s (is actortrain.sync.tcp-port open between the nodes?)"))
                .PipeTo(self);
            return;
        }
        StartGeneration(r.Index, w.Nodes.Length > 1 ? new AkkaRingTransport(r.Index, r.Endpoints, _mailbox, w.Plan.ChunkSizeBytes, _metrics) : null);
    }

    private static async Task<TcpRingTransport> ConnectDataPlane(WorldAssignment w, int index, TcpListener listener, TcpTlsOptions? tls,
        long maxPendingBytes, CancellationToken generationEnded)
    {
        var peers = new List<IPEndPoint>();
        foreach (var n in w.Nodes) peers.Add(await ResolveEndpoint(n.DataPlaneEndpoint, n.NodeName));
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(generationEnded);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        return await TcpRingTransport.ConnectAsync(index, peers, listener, w.Generation, w.Plan.DataPlaneToken,
            Math.Max(1, w.Plan.ChunkSizeBytes / sizeof(float)), timeout.Token, tls, maxPendingBytes);
    }

    private static async Task<IPEndPoint> ResolveEndpoint(string hostAndPort, string nodeName)
    {
        var colon = hostAndPort.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(hostAndPort[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture, out var port))
            throw new InvalidOperationException($"node {nodeName} sent a malformed data-plane address \"{hostAndPort}\"");
        var host = hostAndPort[..colon];
        if (IPAddress.TryParse(host, out var ip)) return new IPEndPoint(ip, port);
        var addresses = await Dns.GetHostAddressesAsync(host);
        var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.FirstOrDefault()
            ?? throw new InvalidOperationException($"cannot resolve {host}, the data-plane host of node {nodeName}");
        return new IPEndPoint(chosen, port);
    }

    private void OnDataPlaneConnected(DataPlaneConnected c)
    {
        if (Superseded(c.Generation))
        {
            c.Transport?.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(2));
            return;
        }
        if (c.Transport is null) { Fail($"cannot connect the TCP data plane of generation {c.Generation}: {c.Error}"); return; }
        _dataPlane = c.Transport;
        StartGeneration(c.Index, c.Transport);
    }

    private void StartGeneration(int index, IRingTransport? cross)
    {
        var w = _world!;
        _metrics.SetGeneration(w.Generation);
        _metrics.SetWorldSize(w.WorldSize);
        if (_intraNodeUsed)
        {
            // A generation that ended mid-step may have left the old one's participants out of step.
            _intraNode?.Dispose();
            _intraNode = IntraNodeCollectives.Select(_intraNodeBackend, LocalSize, _devicesAreCuda, _settings.Sync.NcclLibrary).Collective;
        }
        _intraNodeUsed = true;
        var intraNode = _intraNode ?? throw new InvalidOperationException("the intra-node collective was not created at start-up");
        var me = w.Nodes[index];
        // Nodes started side by side on one machine share its cores.
        var myHost = HostOf(me.EndpointPath);
        var trainersOnHost = w.Nodes.Where(n => HostOf(n.EndpointPath) == myHost).Sum(n => n.TrainerCount);
        var threads = _settings.Node.EffectiveIntraOpThreads(trainersOnHost);
        _progress = Enumerable.Range(0, LocalSize).Select(i => new TrainerProgress(me.FirstRank + i)).ToArray();
        var generation = new GenerationScope(w.Generation, _generationCancelled.Token);
        var compression = WireCompressionNames.Parse(w.Plan.Compression);
        for (var i = 0; i < LocalSize; i++)
        {
            var group = new ProcessGroup(new GroupMember(me.FirstRank + i, w.WorldSize, i, index, w.Nodes.Length), intraNode, cross, compression, generation);
            _trainers[i].Tell(new ConfigureTrainer(w.Generation, me.FirstRank + i, w.WorldSize, w.Plan, group,
                threads, _progress[i], _metrics, _display, _settings.Sync.StepTimeout, _runCancelled.Token, w.Resume, _checkpoints));
        }
        Timers.StartPeriodicTimer("progress", ReportProgress.Instance, ProgressInterval);
        ProgressLine.Info("Generation {0}: this node is {1} of {2} in the ring, global ranks {3}..{4}, intra-node {5}, {6} intra-op thread(s) per trainer ({7} trainer(s) on {8})",
            w.Generation, index, w.Nodes.Length, me.FirstRank, me.FirstRank + LocalSize - 1, intraNode.Name, threads, trainersOnHost, myHost);
        _coordinatorRef.Tell(new NodeReady(w.Generation, _nodeName));
    }

    private void Training()
    {
        Receive<WorldAssignment>(OnWorld);
        Receive<EndpointsResolved>(OnEndpointsResolved);
        Receive<DataPlaneConnected>(OnDataPlaneConnected);
        Receive<Regroup>(OnRegroup);
        Receive<TrainerHalted>(OnTrainerHalted);
        Receive<TrainerBroken>(b =>
        {
            if (b.Generation != _world!.Generation || _brokenReported) return;
            _brokenReported = true;
            // The generation cannot go on: release this node's other trainers now, and let the
            // coordinator decide who is still there.
            _generationCancelled.Cancel();
            _coordinatorRef.Tell(new GenerationBroken(b.Generation, _nodeName, b.Reason, SuspectNeighbour()));
        });
        Receive<HistoryUpdate>(h => _history = h.History);
        Receive<RetryRegistration>(_ => { if (_rejoin is not null) Register(); });
        Receive<NodeRegistered>(r =>
        {
            Timers.Cancel("register");
            // Retries sent before the first answer are answered too.
            if (_coordinatorRef.IsNobody()) ProgressLine.Info("Registered again with the coordinator at {0}", Sender.Path.Address);
            _coordinatorRef = Sender;
        });
        Receive<RegistrationRefused>(r =>
        {
            Timers.Cancel("register");
            // A node coming back to a coordinator that went on without it was left out.
            _session.LeftOut = true;
            Console.Error.WriteLine($"error: the coordinator refused node {_nodeName}: {r.Reason}");
            EndLocally(3, $"refused: {r.Reason}");
        });
        Receive<StartEpoch>(e =>
        {
            if (e.Generation != _world!.Generation) return;
            _collected.Clear();
            _epoch = e.Epoch;
            _metrics.SetEpoch(e.Epoch);
            foreach (var t in _trainers) t.Tell(new RunEpoch(e.Epoch));
        });
        Receive<TrainerEpochDone>(d =>
        {
            _collected[d.LocalRank] = d;
            if (_collected.Count < LocalSize) return;
            var all = _collected.Values.Cast<TrainerEpochDone>().ToList();
            // Each trainer's loss is already the mean over all replicas; report one trainer's.
            var first = all.OrderBy(x => x.LocalRank).First();
            _coordinatorRef.Tell(new EpochCompleted(_world!.Generation, _nodeName, d.Epoch, all.Max(x => x.Steps),
                first.LossSum, first.LossCount, all.Max(x => x.SkippedSteps), all.Select(x => x.TestAccuracy).Max()));
        });
        Receive<ReportProgress>(_ =>
        {
            var ranks = _progress.Select(p => p.Snapshot()).ToArray();
            ReportDataPlaneBytes();
            _coordinatorRef.Tell(new NodeProgress(_world!.Generation, _nodeName, _epoch, ranks));
            if (++_ticks % StatusLineEvery == 0 && ranks.All(r => r.Rank != 0)) PrintStatusLine(ranks);
        });
        Receive<TrainerNonFinite>(n =>
        {
            _metrics.NonFiniteGradient();
            _coordinatorRef.Tell(new NonFiniteGradientReported(_world!.Generation, n.Step, n.GlobalRank, _nodeName, n.Count));
        });
        Receive<FinishTraining>(f =>
        {
            if (f.Generation != _world!.Generation) return;
            _collected.Clear();
            foreach (var t in _trainers) t.Tell(new FinishTrainer(_settings.Training.OutDir));
        });
        Receive<TrainerFinished>(f =>
        {
            _collected[f.LocalRank] = f;
            if (_collected.Count < LocalSize) return;
            var all = _collected.Values.Cast<TrainerFinished>().OrderBy(x => x.LocalRank).ToList();
            Timers.Cancel("progress");
            _coordinatorRef.Tell(new NodeFinished(_world!.Generation, _nodeName, all.Select(x => x.Summary).ToArray(),
                all.Select(x => x.ModelPath).FirstOrDefault(p => p is not null), all.SelectMany(x => x.LossCurve).ToArray()));
        });
        Common();
    }

    /// <summary>
    /// The coordinator ends this generation: stop the trainers at a step boundary (or now, when
    /// the step in flight cannot finish), then report their states and a fresh data-plane address.
    /// </summary>
    private void OnRegroup(Regroup r)
    {
        if (_haltingFor == r.NextGeneration)
        {
            // The coordinator asks again (a retry, or after the network healed): answer with the state the trainers stopped in.
            _coordinatorRef = Sender;
            if (_lastHalted?.NextGeneration == r.NextGeneration) Sender.Tell(_lastHalted);
            return;
        }
        if (_world is null || r.Generation != _world.Generation) return;
        _coordinatorRef = Sender;
        _haltingFor = r.NextGeneration;
        _halted.Clear();
        Timers.Cancel("progress");
        ProgressLine.Info("Generation {0} ends ({1}); {2}", r.Generation, r.Reason,
            r.Graceful ? "stopping after the next step every replica agrees on" : "dropping the step in flight");
        if (!r.Graceful) _generationCancelled.Cancel();
        foreach (var t in _trainers) t.Tell(new HaltTrainer(r.NextGeneration, r.Graceful));
    }

    private void OnTrainerHalted(TrainerHalted h)
    {
        if (h.NextGeneration != _haltingFor) return;
        _halted[h.LocalRank] = h.State;
        if (_halted.Count < LocalSize) return;
        _generationCancelled.Cancel();
        CloseDataPlane();
        try
        {
            if (_dataPlaneListener is null) OpenDataPlaneListener(_cluster.SelfAddress);
        }
        catch (InvalidOperationException e)
        {
            Fail(e.Message);
            return;
        }
        var states = _halted.OrderBy(x => x.Key).Select(x => x.Value).ToArray();
        _lastHalted = new NodeHalted(_haltingFor, _nodeName, states, _dataPlaneEndpoint);
        if (_quorumLost)
        {
            ProgressLine.Info("Node {0}: stopped at step {1} without quorum; waiting for the network to heal", _nodeName, states.Max(t => t.GlobalStep));
            // A coordinator on this side is waiting for it too.
            if (!_coordinatorRef.IsNobody()) _coordinatorRef.Tell(_lastHalted);
            return;
        }
        ProgressLine.Info("Node {0}: stopped after step {1} for generation {2}", _nodeName, states.Max(t => t.GlobalStep), _haltingFor);
        if (_rejoinPending)
        {
            RegisterWithState(states);
            return;
        }
        _coordinatorRef.Tell(_lastHalted);
    }

    /// <summary>Registers with a coordinator that took over, with the state the trainers stopped in.</summary>
    private void RegisterWithState(TrainerHaltState[] states)
    {
        _rejoinPending = false;
        _rejoin = new NodeRejoin(_world!.Generation, states, _history, _world.Plan, _world.Nodes);
        Register();
        Timers.StartPeriodicTimer("register", RetryRegistration.Instance, _settings.RegistrationInterval);
    }

    /// <summary>
    /// Whether this node still sees the majority of its generation (<see cref="Quorum"/>). Without
    /// it the node stops at once: the step in flight is dropped, nothing more is trained or written,
    /// and it waits for the network to heal or the cluster to remove it.
    /// </summary>
    private void CheckQuorum()
    {
        if (_world is null || _ending || !_settings.Elastic.Enabled || _settings.Elastic.Quorum == QuorumPolicy.Off) return;
        var self = _cluster.SelfAddress;
        var voters = _world.Nodes.Select(n => new Quorum.Voter(n.NodeName, Quorum.AddressOf(n.NodeActorPath) ?? self))
            .Where(v => !_departed.Contains(v.Address)).ToList();
        bool Seen(string name) => voters.First(v => v.Name == name).Address is var a && (a == self || !_unreachable.Contains(a));
        if (Quorum.Holds(voters, Seen))
        {
            if (!_quorumLost) return;
            _quorumLost = false;
            _session.QuorumLost = false;
            ProgressLine.Info("Node {0}: sees the majority of generation {1} again; waiting for the coordinator", _nodeName, _world.Generation);
            return;
        }
        if (_quorumLost) return;
        _quorumLost = true;
        _session.QuorumLost = true;
        _rejoinPending = false;
        var lacking = Quorum.Lacking(voters.Count(v => Seen(v.Name)), voters.Count);
        Console.Error.WriteLine($"warning: node {_nodeName}: lost the quorum of generation {_world.Generation} ({lacking}); " +
            "dropping the step in flight and training no further until the network heals");
        if (_haltingFor <= _world.Generation)
        {
            _haltingFor = _world.Generation + 1;
            _halted.Clear();
        }
        Timers.Cancel("progress");
        Timers.Cancel("register");
        _generationCancelled.Cancel();
        foreach (var t in _trainers) t.Tell(new HaltTrainer(_haltingFor, false));
    }

    private void CloseDataPlane()
    {
        if (_dataPlane is null) return;
        ReportDataPlaneBytes();
        _dataPlane.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(2));
        _dataPlane = null;
        (_tcpSentReported, _tcpReceivedReported) = (0, 0);
        _tcpDropsReported = (0, 0, 0);
    }

    private void Common()
    {
        Receive<EndRun>(e => EndLocally(e.ExitCode, e.Reason));
        Receive<LocalFailure>(f => Fail(f.Reason));
        Receive<Terminated>(t =>
        {
            if (!_ending && !_runCancelled.IsCancellationRequested && _trainers.Contains(t.ActorRef))
                Fail($"trainer {t.ActorRef.Path.Name} stopped");
        });
        Receive<LeftOut>(l =>
        {
            _session.LeftOut = true;
            Console.Error.WriteLine($"error: node {_nodeName}: {l.Reason}");
            EndLocally(3, l.Reason);
        });
        Receive<DrainNode>(_ => Drain());
        Receive<SeedLost>(l =>
        {
            if (_ending || _quorumLost) return;
            Console.Error.WriteLine($"error: node {_nodeName}: the seed node {l.Address} is {l.How}; the coordinator is gone" +
                (l.NoSeedLeft ? " and no other seed node is up" : ""));
            EndLocally(3, $"the seed node {l.Address} is {l.How}");
        });
        Receive<ClusterEvent.UnreachableMember>(m =>
        {
            _unreachable.Add(m.Member.Address);
            CheckQuorum();
            OnMemberLost(m.Member, "unreachable");
        });
        Receive<ClusterEvent.ReachableMember>(m =>
        {
            _unreachable.Remove(m.Member.Address);
            CheckQuorum();
        });
        Receive<ClusterEvent.MemberRemoved>(m =>
        {
            _upMembers.Remove(m.Member.Address);
            _metrics.SetMembers(_upMembers.Count);
            // A member removed without being unreachable first left (or was taken out by a coordinator that holds quorum).
            if (!_unreachable.Contains(m.Member.Address)) _departed.Add(m.Member.Address);
            CheckQuorum();
            OnMemberLost(m.Member, "removed");
        });
        Receive<ClusterEvent.IMemberEvent>(e =>
        {
            // Counted from the events themselves: the cluster's state snapshot can lag behind them.
            if (e is ClusterEvent.MemberUp or ClusterEvent.MemberWeaklyUp)
            {
                _upMembers.Add(e.Member.Address);
                if (e.Member.HasRole(Cluster.Hosting.ClusterBootstrap.SeedRole)) _seedsUp.Add(e.Member.Address);
            }
            else if (e is ClusterEvent.MemberRemoved or ClusterEvent.MemberExited or ClusterEvent.MemberLeft) _upMembers.Remove(e.Member.Address);
            _metrics.SetMembers(_upMembers.Count);
        });
        Receive<RetryRegistration>(_ => { });
        Receive<RegistrationUnanswered>(_ => { });
        Receive<ReportProgress>(_ => { });
    }

    private void OnMemberLost(Member member, string how)
    {
        if (_ending || member.Address == _cluster.SelfAddress || !member.HasRole(Cluster.Hosting.ClusterBootstrap.SeedRole)) return;
        _seedsUp.Remove(member.Address);
        // Cut off from the majority: nothing to do but wait (the network heals, or the cluster removes this node).
        if (_quorumLost) return;
        if (_world is null && _coordinatorRef.IsNobody()) return;
        var coordinatorThere = _coordinatorRef.IsNobody() || _coordinatorRef.Path.Address == member.Address;
        if (!coordinatorThere) return;
        if (_seedsUp.Count == 0 || !_settings.Elastic.Enabled || _world is null)
        {
            // Without a seed node nobody forms the world or ends the run: stop rather than wait
            // forever. Not at once: the failure detector reports the members it lost one event at
            // a time, and if this node turns out to be the one cut off (no quorum), it waits instead.
            Timers.StartSingleTimer("seed-lost", new SeedLost(member.Address, how, _seedsUp.Count == 0), SeedLostGrace);
            return;
        }
        if (_rejoin is not null || _haltingFor > _world.Generation && _coordinatorRef.IsNobody()) return;
        // The coordinator singleton moves to another seed node once this one is removed: stop the
        // trainers and register again with what they hold, so the new coordinator goes on from it.
        ProgressLine.Info("Node {0}: the coordinator's seed node {1} is {2}; stopping and registering with the coordinator that takes over on {3}",
            _nodeName, member.Address, how, string.Join(", ", _seedsUp));
        _coordinatorRef = ActorRefs.Nobody;
        _rejoinPending = true;
        if (_lastHalted is { } done && _haltingFor > _world.Generation && done.NextGeneration == _haltingFor && _halted.Count == LocalSize)
        {
            // The coordinator died during a regroup, after this node had stopped and reported: its
            // trainers are stopped already, so register with the state they stopped in.
            RegisterWithState(done.Trainers);
            return;
        }
        // Stopping already (a regroup in progress): the registration goes out once every trainer has stopped.
        if (_haltingFor > _world.Generation) return;
        _haltingFor = _world.Generation + 1;
        _halted.Clear();
        Timers.Cancel("progress");
        _generationCancelled.Cancel();
        foreach (var t in _trainers) t.Tell(new HaltTrainer(_haltingFor, false));
    }

    /// <summary>
    /// SIGTERM: leave at a step boundary. The coordinator stops every replica after the same step
    /// and forms the next generation without this node, so no step is redone; then it ends this node.
    /// </summary>
    private void Drain()
    {
        if (_ending) return;
        if (_world is null || !_settings.Elastic.Enabled || _coordinatorRef.IsNobody() || _quorumLost)
        {
            EndLocally(143, "terminated (SIGTERM)");
            return;
        }
        ProgressLine.Info("Node {0}: SIGTERM; leaving the run at the next step boundary", _nodeName);
        _coordinatorRef.Tell(new NodeLeaving(_nodeName, "SIGTERM"));
    }

    private void Fail(string reason)
    {
        if (_ending) return;
        _log.Error("Node {0} cannot go on: {1}", _nodeName, reason);
        Console.Error.WriteLine($"error: node {_nodeName}: {reason}");
        _runCancelled.Cancel();
        if (!_coordinatorRef.IsNobody()) _coordinatorRef.Tell(new NodeFailed(_nodeName, reason));
        else _coordinator.Tell(new NodeFailed(_nodeName, reason));
        // The coordinator answers with EndRun; if it cannot, end after a grace period anyway.
        Timers.StartSingleTimer("fail-exit", new EndRun(1, reason), TimeSpan.FromSeconds(15));
    }

    private void EndLocally(int exitCode, string reason)
    {
        if (_ending) return;
        _ending = true;
        _runCancelled.Cancel();
        Context.System.EventStream.Publish(new EndRun(exitCode, reason));
    }

    private static string HostOf(string actorPath) =>
        ActorPath.TryParse(actorPath, out var path) ? path.Address.Host ?? "" : "";

    private sealed class RetryRegistration
    {
        public static readonly RetryRegistration Instance = new();
        private RetryRegistration() { }
    }

    /// <summary>The ring neighbour whose data-plane connection failed, when the TCP transport knows.</summary>
    private string SuspectNeighbour()
    {
        if (_world is null || _dataPlane is null) return "";
        return _world.Nodes[_dataPlane.ReceiveFaulted ? _dataPlane.LeftNeighbour : _dataPlane.RightNeighbour].NodeName;
    }

    private string NeighbourNames()
    {
        if (_world is null || _dataPlane is null) return "unknown";
        return $"left {_world.Nodes[_dataPlane.LeftNeighbour].NodeName}, right {_world.Nodes[_dataPlane.RightNeighbour].NodeName}";
    }

    /// <summary>The TCP transport counts its own bytes; the metrics get the difference since the last report.</summary>
    private void ReportDataPlaneBytes()
    {
        if (_dataPlane is null) return;
        var (sent, received) = (_dataPlane.BytesSent, _dataPlane.BytesReceived);
        _metrics.AddBytes(TransportLabel.Tcp, sent: true, sent - _tcpSentReported);
        _metrics.AddBytes(TransportLabel.Tcp, sent: false, received - _tcpReceivedReported);
        (_tcpSentReported, _tcpReceivedReported) = (sent, received);
        // What the transport refused, by reason: the pending bound, other frames, connections.
        var (limit, frames, rejected) = (_dataPlane.PendingLimitDropped, _dataPlane.DroppedFrames, _dataPlane.RejectedConnections);
        _metrics.Dropped(DropReason.PendingLimit, limit - _tcpDropsReported.Limit);
        _metrics.Dropped(DropReason.DroppedFrame, frames - limit - (_tcpDropsReported.Frames - _tcpDropsReported.Limit));
        _metrics.Dropped(DropReason.RejectedConnection, rejected - _tcpDropsReported.Rejected);
        _tcpDropsReported = (limit, frames, rejected);
    }

    private (long Limit, long Frames, long Rejected) _tcpDropsReported;

    /// <summary>Nodes without rank 0 print a compact status line now and then instead of a progress bar.</summary>
    private void PrintStatusLine(RankProgress[] ranks)
    {
        var now = DateTime.UtcNow;
        var steps = ranks.Min(r => r.Step);
        var rate = _lastStatusAt == default ? 0 : (steps - _stepsAtLastStatus) / (now - _lastStatusAt).TotalSeconds;
        _stepsAtLastStatus = steps;
        _lastStatusAt = now;
        var (epoch, stepInEpoch, stepsPerEpoch) = _progress[0].Position();
        NodeLog.Output(StatusLine.Compact(_nodeName, epoch, _world!.Plan.Epochs, stepInEpoch, stepsPerEpoch, rate), false);
    }

    private const int StatusLineEvery = 5;

    /// <summary>How often the node tells the coordinator where its trainers are (for status and hang reports).</summary>
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(2);

    private sealed class ReportProgress
    {
        public static readonly ReportProgress Instance = new();
        private ReportProgress() { }
    }

    private sealed class RegistrationUnanswered
    {
        public static readonly RegistrationUnanswered Instance = new();
        private RegistrationUnanswered() { }
    }

    private sealed record DataPlaneConnected(long Generation, int Index, TcpRingTransport? Transport, string? Error);

    private sealed record EndpointsResolved(long Generation, int Index, IActorRef[] Endpoints, string? Error);

    private sealed record LocalFailure(string Reason);

    private sealed record SeedLost(Address Address, string How, bool NoSeedLeft);

    /// <summary>How long a node that lost its only seed waits for the rest of the failure detector's news before it ends.</summary>
    private static readonly TimeSpan SeedLostGrace = TimeSpan.FromSeconds(2);
}

/// <summary>Tells the node actor that the process was asked to stop (SIGTERM): leave the run at a step boundary.</summary>
public sealed class DrainNode
{
    public static readonly DrainNode Instance = new();
    private DrainNode() { }
}
