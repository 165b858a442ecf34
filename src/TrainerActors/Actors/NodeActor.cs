using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.Sync;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Transport;
using ActorTrain.TrainerActors.Checkpoints;
using ActorTrain.TrainerActors.DataPlane;
using ActorTrain.TrainerActors.Hosting;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Reporting;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// One per process: the node's side of the run's protocol. It spawns one trainer per device
/// (<see cref="NodeDevices"/>), registers with the coordinator, sets each generation up through
/// its data plane (<see cref="NodeDataPlane"/>), relays the run's phases to its trainers, stops
/// them for regroups, watches its quorum and the cluster's members, and ends the node.
/// </summary>
internal sealed class NodeActor : ReceiveActor, IWithTimers
{
    private readonly ActorTrainSettings _settings;
    private readonly TrainingJob _job;
    private readonly IActorRef _coordinator;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly NodeOutput _output = NodeOutput.Get(Context.System);
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly NodeMetrics _metrics;
    private readonly IProgressSink _display;
    private readonly NodeSession _session;
    private readonly NodeTrainers _trainers = new();
    private readonly NodeCancellation _cancel = new();
    private NodeDevices? _devices;
    private NodeDataPlane? _dataPlane;
    private NodeStatusLine _statusLine = null!;
    private IActorRef _coordinatorRef = ActorRefs.Nobody;
    private WorldAssignment? _world;
    private RunHistory _history = RunHistory.Empty;
    private TrainerCheckpoints? _checkpoints;
    private CheckpointOffer? _offer;
    private int _epoch;
    private string _nodeName = "";
    private readonly NodeHalt _halt;
    private readonly NodeEnding _end;
    private NodeClusterWatch _watch = null!;
    private NodeRegistration _registration = null!;

    public ITimerScheduler Timers { get; set; } = null!;

    public NodeActor(ActorTrainSettings settings, TrainingJob job, IActorRef coordinator, NodeMetrics metrics, IProgressSink display, NodeSession? session = null)
    {
        _session = session ?? new NodeSession();
        _halt = new NodeHalt(_trainers);
        _end = new NodeEnding(Context.System, _output, _cancel, _log);
        _metrics = metrics;
        _display = display;
        _settings = settings;
        _job = job;
        _coordinator = coordinator;
        Starting();
    }

    public static Props Props(ActorTrainSettings settings, TrainingJob job, IActorRef coordinator, NodeMetrics metrics, IProgressSink display, NodeSession? session = null) =>
        Akka.Actor.Props.Create(() => new NodeActor(settings, job, coordinator, metrics, display, session));

    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(0, TimeSpan.Zero, e =>
    {
        // A trainer that throws has a replica in an unknown state: the run cannot go on.
        // One released from a collective because the run is ending is no failure of its own.
        if (e is not TrainingCancelledException) Self.Tell(new LocalFailure(NodeEnd.TrainerFailure(e, _dataPlane, _world)));
        return Directive.Stop;
    });

    protected override void PreStart()
    {
        var selfAddress = _cluster.SelfAddress;
        _nodeName = string.IsNullOrEmpty(_settings.NodeName) ? $"{selfAddress.Host}:{selfAddress.Port}" : _settings.NodeName;
        _statusLine = new NodeStatusLine(_nodeName, _output);
        _watch = new NodeClusterWatch(selfAddress, _settings.Elastic);
        _registration = new NodeRegistration(Timers, _settings.RegistrationInterval, _settings.StartupTimeout);
        _cancel.CancelOnShutdown(Context.System);
        try
        {
            _dataPlane = NodeDataPlane.Open(Context, _settings.Sync, _metrics);
            _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, NodeClusterWatch.Events);
            _devices = NodeDevices.Start(_settings, _nodeName, _log);
            _trainers.Spawn(Context, _job, _devices, _settings);
        }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or ArgumentException or System.Net.Sockets.SocketException)
        {
            _end.With(NodeEnd.CannotStart(_nodeName, e));
        }
    }

    protected override void PostStop()
    {
        _cancel.CancelRun();
        _cluster.Unsubscribe(Self);
        _devices?.Dispose();
        _dataPlane?.Dispose();
    }

    private void Starting()
    {
        Receive<TrainerReady>(r =>
        {
            if (!_trainers.AllReady(r)) return;
            if (!_trainers.SameModel) { Fail("the trainers of this node built different models"); return; }
            try
            {
                (_checkpoints, _offer) = TrainerCheckpoints.Prepare(_settings, _trainers.Fingerprint, _nodeName, _output, _log);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
            {
                _end.With(NodeEnd.CannotResume(_nodeName, e));
                return;
            }
            Register();
            _registration.Begin();
        });
        Receive<NodeRegistration.Unanswered>(_ =>
            _end.With(NodeEnd.Unanswered(_nodeName, _settings, _session.Rejoining, Context.System.Settings.Config.GetStringList("akka.cluster.seed-nodes"))));
        Common();
    }

    private void Register()
    {
        _coordinator.Tell(new RegisterNode(_settings.JobId, ActorTrainSettings.ProtocolVersion, _trainers.Fingerprint, _nodeName, _trainers.Count,
            Self.Path.ToStringWithAddress(_cluster.SelfAddress), _dataPlane!.EndpointPath, _trainers.Devices, _dataPlane.Endpoint, _registration.Rejoin,
            _world is null ? _offer : null, _settings.JobSettingsDigest));
    }

    private void OnWorld(WorldAssignment w)
    {
        _coordinatorRef = Sender;
        _registration.Stop();
        if (_world is not null && w.Generation <= _world.Generation) return;
        var index = Array.FindIndex(w.Nodes, n => n.NodeName == _nodeName);
        if (index < 0) { Fail($"world generation {w.Generation} does not include this node"); return; }
        _cancel.NextGeneration();
        _trainers.ClearAnswers();
        _registration.Joined();
        _dataPlane!.CloseGeneration();
        _world = w;
        _history = w.History;
        _watch.QuorumLost = false;
        _session.Peers = w.Nodes.Select(n => Quorum.AddressOf(n.NodeActorPath)?.ToString()).OfType<string>().ToArray();
        Become(Training);
        try
        {
            _dataPlane.Connect(w, index, Self, _cancel.Generation);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            Fail(e.Message);
        }
    }

    /// <summary>A generation the coordinator already ended (a regroup while the node was still setting it up) never starts.</summary>
    private bool Superseded(long generation) => generation != _world!.Generation || _halt.Beyond(generation);

    private void OnRingReady(RingReady r)
    {
        if (Superseded(r.Generation)) { NodeDataPlane.Discard(r.Ring); return; }
        if (r.Error is not null) { Fail(r.Error); return; }
        _dataPlane!.Adopt(r.Ring);
        StartGeneration(r.Index, r.Ring);
    }

    private void StartGeneration(int index, IRingTransport? cross)
    {
        var w = _world!;
        _metrics.SetGeneration(w.Generation);
        _metrics.SetWorldSize(w.WorldSize);
        var intraNode = _devices!.ForGeneration();
        var me = w.Nodes[index];
        var (threads, trainersOnHost, myHost) = NodeDevices.IntraOpThreads(_settings.Node, w, me);
        _trainers.StartProgress(me.FirstRank);
        var groups = ProcessGroup.ForNode(new GroupMember(me.FirstRank, w.WorldSize, 0, index, w.Nodes.Length), _trainers.Count, intraNode, cross,
            WireCompressionNames.Parse(w.Plan.Compression), new GenerationScope(w.Generation, _cancel.Generation));
        for (var i = 0; i < _trainers.Count; i++)
        {
            _trainers[i].Tell(new HistoryUpdate(_history)); // what checkpoints record of the run, before the world
            _trainers[i].Tell(new ConfigureTrainer(w.Generation, me.FirstRank + i, w.WorldSize, w.Plan, groups[i],
                threads, _trainers.Progress[i], _metrics, _display, _settings.Sync.StepTimeout, _cancel.Run, w.Resume, _checkpoints));
        }
        Timers.StartPeriodicTimer("progress", ReportProgress.Instance, ReportProgress.Interval);
        ProgressLine.Info("Generation {0}: this node is {1} of {2} in the ring, global ranks {3}..{4}, intra-node {5}, {6} intra-op thread(s) per trainer ({7} trainer(s) on {8}){9}",
            w.Generation, index, w.Nodes.Length, me.FirstRank, me.FirstRank + _trainers.Count - 1, intraNode.Name, threads, trainersOnHost, myHost,
            _dataPlane!.CrossNodeMedium() is { } medium ? "; " + medium : "");
        _coordinatorRef.Tell(new NodeReady(w.Generation, _nodeName));
    }

    private void Training()
    {
        Receive<Regroup>(OnRegroup);
        Receive<TrainerHalted>(OnTrainerHalted);
        Receive<TrainerBroken>(b =>
        {
            // The generation cannot go on: release this node's other trainers now, and let the coordinator decide who is still there.
            if (b.Generation == _world!.Generation && _cancel.BreakGeneration())
                _coordinatorRef.Tell(new GenerationBroken(b.Generation, _nodeName, b.Reason, _dataPlane!.SuspectNeighbour(_world)));
        });
        Receive<HistoryUpdate>(h => { _history = h.History; _trainers.TellAll(h); });
        Receive<StartEpoch>(e =>
        {
            if (e.Generation != _world!.Generation) return;
            _epoch = e.Epoch;
            _metrics.SetEpoch(e.Epoch);
            _trainers.Request(new RunEpoch(e.Epoch));
        });
        Receive<TrainerEpochDone>(d => { if (_trainers.EpochDone(d, _world!.Generation, _nodeName) is { } completed) _coordinatorRef.Tell(completed); });
        Receive<ReportProgress>(_ =>
        {
            var ranks = _trainers.Snapshot();
            _dataPlane!.ReportBytes();
            _coordinatorRef.Tell(new NodeProgress(_world!.Generation, _nodeName, _epoch, ranks));
            _statusLine.Tick(ranks, _trainers.Progress[0], _world.Plan.Epochs);
        });
        Receive<TrainerNonFinite>(n =>
        {
            _metrics.NonFiniteGradient();
            _coordinatorRef.Tell(new NonFiniteGradientReported(_world!.Generation, n.Step, n.GlobalRank, _nodeName, n.Count));
        });
        Receive<FinishTraining>(f => { if (f.Generation == _world!.Generation) _trainers.Request(new FinishTrainer(_settings.Training.OutDir)); });
        Receive<TrainerFinished>(f =>
        {
            if (_trainers.Finished(f, _world!.Generation, _nodeName) is not { } finished) return;
            Timers.Cancel("progress");
            _coordinatorRef.Tell(finished);
        });
        Common();
    }

    /// <summary>
    /// The coordinator ends this generation: stop the trainers at a step boundary (or now, when
    /// the step in flight cannot finish), then report their states and a fresh data-plane address.
    /// </summary>
    private void OnRegroup(Regroup r)
    {
        var again = _halt.For == r.NextGeneration;
        if (!again && (_world is null || r.Generation != _world.Generation)) return;
        _coordinatorRef = Sender;
        // The coordinator asks again (a retry, or after the network healed): answer with the state the trainers stopped in.
        if (again) { if (_halt.Answer(r.NextGeneration) is { } halted) Sender.Tell(halted); return; }
        ProgressLine.Info("Generation {0} ends ({1}); {2}", r.Generation, r.Reason,
            r.Graceful ? "stopping after the next step every replica agrees on" : "dropping the step in flight");
        HaltTrainers(r.NextGeneration, r.Graceful);
    }

    /// <summary>Stops the trainers for <paramref name="nextGeneration"/>; not graceful: the step in flight is dropped.</summary>
    private void HaltTrainers(long nextGeneration, bool graceful)
    {
        _halt.Begin(nextGeneration);
        Timers.Cancel("progress");
        if (!graceful) _cancel.CancelGeneration();
        _trainers.TellAll(new HaltTrainer(nextGeneration, graceful));
    }

    private void OnTrainerHalted(TrainerHalted h)
    {
        if (_halt.Halted(h) is not { } states) return;
        _cancel.CancelGeneration();
        _dataPlane!.CloseGeneration();
        try
        {
            _dataPlane.ListenForNextGeneration();
        }
        catch (InvalidOperationException e)
        {
            Fail(e.Message);
            return;
        }
        var halted = _halt.Report(_nodeName, states, _dataPlane.Endpoint);
        if (_watch.QuorumLost)
        {
            ProgressLine.Info("Node {0}: stopped at step {1} without quorum; waiting for the network to heal", _nodeName, states.Max(t => t.Position.GlobalStep));
            // A coordinator on this side is waiting for it too.
            if (!_coordinatorRef.IsNobody()) _coordinatorRef.Tell(halted);
            return;
        }
        ProgressLine.Info("Node {0}: stopped after step {1} for generation {2}", _nodeName, states.Max(t => t.Position.GlobalStep), _halt.For);
        if (_registration.OnceHalted) RegisterWithState(states);
        else _coordinatorRef.Tell(halted);
    }

    /// <summary>Registers with a coordinator that took over, with the state the trainers stopped in.</summary>
    private void RegisterWithState(TrainerHaltState[] states)
    {
        _registration.BeginRejoin(new NodeRejoin(_world!.Generation, states, _history, _world.Plan, _world.Nodes));
        Register();
        _registration.Retry();
    }

    /// <summary>
    /// Without the majority of its generation (<see cref="Quorum"/>) the node stops at once: the
    /// step in flight is dropped, nothing more is trained or written, and it waits for the network
    /// to heal or the cluster to remove it.
    /// </summary>
    private void CheckQuorum()
    {
        var verdict = _watch.CheckQuorum(_world, _end.Ending, out var lacking);
        if (verdict == QuorumVerdict.Unchanged) return;
        _session.QuorumLost = verdict == QuorumVerdict.Lost;
        if (verdict == QuorumVerdict.Regained)
            ProgressLine.Info("Node {0}: sees the majority of generation {1} again; waiting for the coordinator", _nodeName, _world!.Generation);
        if (verdict != QuorumVerdict.Lost) return;
        _registration.Suspend();
        _output.Warning($"node {_nodeName}: lost the quorum of generation {_world!.Generation} ({lacking}); " +
            "dropping the step in flight and training no further until the network heals");
        HaltTrainers(Math.Max(_halt.For, _world.Generation + 1), graceful: false);
    }

    private void Common()
    {
        Receive<WorldAssignment>(OnWorld);
        Receive<RingReady>(OnRingReady);
        // Registration answers: the first (before any world), or a rejoin's with a coordinator that took over.
        Receive<NodeRegistration.Again>(_ => { if (_registration.Retrying(_world is not null)) Register(); });
        Receive<NodeRegistered>(r =>
        {
            _registration.Stop();
            if (_world is null) ProgressLine.Info("Registered with the coordinator as {0}; {1}/{2} node(s) so far", r.NodeName, r.NodesRegistered, r.MinNodes);
            // Retries sent before the first answer are answered too.
            else if (_coordinatorRef.IsNobody()) ProgressLine.Info("Registered again with the coordinator at {0}", Sender.Path.Address);
            _coordinatorRef = Sender;
        });
        Receive<RegistrationRefused>(r =>
        {
            _registration.Stop();
            _log.Error("The coordinator refused this node: {0}", r.Reason);
            _end.With(NodeEnd.Refused(_nodeName, r.Reason, _world is not null, _session));
        });
        Receive<EndRun>(e => _end.Locally(e.ExitCode, e.Reason));
        Receive<LocalFailure>(f => Fail(f.Reason));
        Receive<Terminated>(t => { if (!_end.Ending && !_cancel.RunCancelled && _trainers.Contains(t.ActorRef)) Fail($"trainer {t.ActorRef.Path.Name} stopped"); });
        Receive<LeftOut>(l => _end.With(NodeEnd.LeftOut(_nodeName, l.Reason, _session)));
        Receive<DrainNode>(_ => Drain());
        Receive<SeedLost>(l => { if (!_end.Ending && !_watch.QuorumLost) _end.With(NodeEnd.SeedLost(_nodeName, l.Address, l.How, l.NoSeedLeft)); });
        Receive<ClusterEvent.IClusterDomainEvent>(e =>
        {
            var change = _watch.Apply(e);
            if (e is ClusterEvent.IMemberEvent) _metrics.SetMembers(_watch.Members.UpCount);
            if (change is null) return;
            CheckQuorum();
            if (change.Value.Lost is { } lost) OnMemberLost(lost, change.Value.How);
        });
        Receive<NodeRegistration.Unanswered>(_ => { });
        Receive<ReportProgress>(_ => { });
    }

    private void OnMemberLost(Member member, string how)
    {
        var state = new NodeSeedState(_end.Ending, _world, _coordinatorRef.IsNobody() ? null : _coordinatorRef.Path.Address, _registration.Rejoin is not null,
            _world is not null && _halt.Beyond(_world.Generation), _halt.Reported);
        var action = _watch.MemberLost(member, state);
        if (action == SeedLossAction.EndAfterGrace)
            Timers.StartSingleTimer("seed-lost", new SeedLost(member.Address, how, _watch.Members.SeedsUp.Count == 0), NodeClusterWatch.SeedLostGrace);
        if (action is SeedLossAction.Ignore or SeedLossAction.EndAfterGrace) return;
        ProgressLine.Info("Node {0}: the coordinator's seed node {1} is {2}; stopping and registering with the coordinator that takes over on {3}",
            _nodeName, member.Address, how, string.Join(", ", _watch.Members.SeedsUp));
        _coordinatorRef = ActorRefs.Nobody;
        _registration.OnceHalted = true;
        // Died during a regroup after this node had stopped and reported: register with the state its trainers stopped in.
        if (action == SeedLossAction.RegisterNow) RegisterWithState(_halt.Last!.Trainers);
        // Not stopping yet: stop now; the registration goes out once every trainer has stopped.
        else if (action == SeedLossAction.HaltThenRegister) HaltTrainers(_world!.Generation + 1, graceful: false);
    }

    /// <summary>
    /// SIGTERM: leave at a step boundary. The coordinator stops every replica after the same step
    /// and forms the next generation without this node, so no step is redone; then it ends this node.
    /// </summary>
    private void Drain()
    {
        if (_end.Ending) return;
        if (_world is null || !_settings.Elastic.Enabled || _coordinatorRef.IsNobody() || _watch.QuorumLost)
        {
            _end.Locally(ExitCodes.Terminated, "terminated (SIGTERM)");
            return;
        }
        ProgressLine.Info("Node {0}: SIGTERM; leaving the run at the next step boundary", _nodeName);
        _coordinatorRef.Tell(new NodeLeaving(_nodeName, "SIGTERM"));
    }

    private void Fail(string reason)
    {
        // The coordinator answers with EndRun; if it cannot, the node ends after a grace period anyway.
        if (_end.Fail(_nodeName, reason, Timers)) (_coordinatorRef.IsNobody() ? _coordinator : _coordinatorRef).Tell(new NodeFailed(_nodeName, reason));
    }
}
