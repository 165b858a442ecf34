using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.Sync.Transport;
using ActorTrain.TrainerActors.Checkpoints;
using ActorTrain.TrainerActors.DataPlane;
using ActorTrain.TrainerActors.Hosting;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Reporting;
using ActorTrain.TrainerActors.Torch;
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
public sealed class NodeActor : ReceiveActor, IWithTimers
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
    private readonly CancellationTokenSource _runCancelled = new();
    private CancellationTokenSource _generationCancelled = new();
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
    private long _haltingFor = -1;
    private NodeHalted? _lastHalted;
    private bool _brokenReported;
    private bool _rejoinPending;
    private NodeRejoin? _rejoin;
    private bool _ending;
    private NodeMembership _members = null!;
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
                    IOException when _dataPlane?.UsesTcp == true => $"lost the TCP data plane to a ring neighbour ({_dataPlane.NeighbourNames(_world)}): {e.Message}",
                    _ => $"{e.GetType().Name}: {e.Message}",
                }));
            return Directive.Stop;
        });

    protected override void PreStart()
    {
        var selfAddress = _cluster.SelfAddress;
        _nodeName = string.IsNullOrEmpty(_settings.NodeName) ? $"{selfAddress.Host}:{selfAddress.Port}" : _settings.NodeName;
        _statusLine = new NodeStatusLine(_nodeName, _output);
        _members = new NodeMembership(selfAddress);
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
            StartNode();
        }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or ArgumentException or System.Net.Sockets.SocketException)
        {
            // A node that cannot start (port taken, no CUDA, no NCCL…) says why and ends the
            // process instead of restarting into the same error.
            EndWithError(ExitCodes.BadConfiguration, $"node {_nodeName} cannot start: {e.Message}", $"cannot start: {e.Message}");
        }
    }

    private void StartNode()
    {
        _dataPlane = NodeDataPlane.Open(Context, _settings.Sync, _metrics);
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.ReachableMember));
        _devices = NodeDevices.Start(_settings, _nodeName, _log);
        _trainers.Spawn(Context, _job, _devices, _settings);
    }

    protected override void PostStop()
    {
        _runCancelled.Cancel();
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
                (_checkpoints, _offer) = TrainerCheckpoints.Prepare(_settings, _trainers.Fingerprint, _nodeName, Warn, _output);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException)
            {
                EndWithError(ExitCodes.BadConfiguration, $"node {_nodeName} cannot resume: {e.Message}", $"cannot resume: {e.Message}");
                return;
            }
            Register();
            Timers.StartPeriodicTimer("register", RetryRegistration.Instance, _settings.RegistrationInterval);
            if (_settings.StartupTimeout > TimeSpan.Zero)
                Timers.StartSingleTimer("unanswered", RegistrationUnanswered.Instance, _settings.StartupTimeout);
        });
        Receive<RegistrationUnanswered>(_ =>
        {
            var waited = $"{_settings.StartupTimeout.TotalSeconds:0}s";
            if (_session.Rejoining)
            {
                EndWithError(ExitCodes.NodeLost, $"node {_nodeName}: could not rejoin the cluster within {waited} (actortrain.elastic.rejoin-timeout)", "could not rejoin the cluster");
                return;
            }
            var seeds = string.Join(", ", Context.System.Settings.Config.GetStringList("akka.cluster.seed-nodes"));
            EndWithError(ExitCodes.BadConfiguration, $"node {_nodeName}: no coordinator answered within {waited} (actortrain.startup-timeout); is a seed node of job \"{_settings.JobId}\" " +
                $"running at {(seeds.Length > 0 ? seeds : "the configured seed nodes")}?", "no coordinator answered");
        });
        Common();
    }

    private void Warn(string warning)
    {
        _log.Warning("{0}", warning);
        _output.Warning(warning);
    }

    private void StopRegistering()
    {
        Timers.Cancel("register");
        Timers.Cancel("unanswered");
    }

    private void Register()
    {
        var address = _cluster.SelfAddress;
        _coordinator.Tell(new RegisterNode(_settings.JobId, ActorTrainSettings.ProtocolVersion, _trainers.Fingerprint, _nodeName, LocalSize,
            Self.Path.ToStringWithAddress(address), _dataPlane!.EndpointPath, _trainers.Devices, _dataPlane.Endpoint, _rejoin, _world is null ? _offer : null));
    }

    private void OnWorld(WorldAssignment w)
    {
        _coordinatorRef = Sender;
        StopRegistering();
        if (_world is not null && w.Generation <= _world.Generation) return;
        var index = Array.FindIndex(w.Nodes, n => n.NodeName == _nodeName);
        if (index < 0) { Fail($"world generation {w.Generation} does not include this node"); return; }
        // The previous generation's rings are over.
        _generationCancelled.Cancel();
        _generationCancelled = CancellationTokenSource.CreateLinkedTokenSource(_runCancelled.Token);
        _brokenReported = false;
        _trainers.ClearAnswers();
        _rejoin = null;
        _dataPlane!.CloseGeneration();
        _world = w;
        _history = w.History;
        _quorumLost = false;
        _session.Peers = w.Nodes.Select(n => Quorum.AddressOf(n.NodeActorPath)?.ToString()).OfType<string>().ToArray();
        Become(Training);
        try
        {
            _dataPlane.Connect(w, index, Self, _generationCancelled.Token);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            Fail(e.Message);
        }
    }

    /// <summary>A generation the coordinator already ended (a regroup while the node was still setting it up) never starts.</summary>
    private bool Superseded(long generation) => generation != _world!.Generation || _haltingFor > generation;

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
        for (var i = 0; i < LocalSize; i++)
        {
            // What checkpoints record of the run reaches the trainer by message, before its world.
            _trainers[i].Tell(new HistoryUpdate(_history));
            _trainers[i].Tell(new ConfigureTrainer(w.Generation, me.FirstRank + i, w.WorldSize, w.Plan, intraNode, cross,
                threads, _trainers.Progress[i], _metrics, _display, _settings.Sync.StepTimeout, _runCancelled.Token, w.Resume, _generationCancelled.Token,
                _checkpoints));
        }
        Timers.StartPeriodicTimer("progress", ReportProgress.Instance, ProgressInterval);
        ProgressLine.Info("Generation {0}: this node is {1} of {2} in the ring, global ranks {3}..{4}, intra-node {5}, {6} intra-op thread(s) per trainer ({7} trainer(s) on {8})",
            w.Generation, index, w.Nodes.Length, me.FirstRank, me.FirstRank + LocalSize - 1, intraNode.Name, threads, trainersOnHost, myHost);
        _coordinatorRef.Tell(new NodeReady(w.Generation, _nodeName));
    }

    private void Training()
    {
        Receive<Regroup>(OnRegroup);
        Receive<TrainerHalted>(OnTrainerHalted);
        Receive<TrainerBroken>(b =>
        {
            if (b.Generation != _world!.Generation || _brokenReported) return;
            _brokenReported = true;
            // The generation cannot go on: release this node's other trainers now, and let the
            // coordinator decide who is still there.
            _generationCancelled.Cancel();
            _coordinatorRef.Tell(new GenerationBroken(b.Generation, _nodeName, b.Reason, _dataPlane!.SuspectNeighbour(_world)));
        });
        Receive<HistoryUpdate>(h =>
        {
            _history = h.History;
            _trainers.TellAll(h);
        });
        Receive<StartEpoch>(e =>
        {
            if (e.Generation != _world!.Generation) return;
            _trainers.ClearAnswers();
            _epoch = e.Epoch;
            _metrics.SetEpoch(e.Epoch);
            _trainers.TellAll(new RunEpoch(e.Epoch));
        });
        Receive<TrainerEpochDone>(d =>
        {
            if (_trainers.EpochDone(d, _world!.Generation, _nodeName) is { } completed) _coordinatorRef.Tell(completed);
        });
        Receive<ReportProgress>(_ =>
        {
            var ranks = _trainers.Progress.Select(p => p.Snapshot()).ToArray();
            _dataPlane!.ReportBytes();
            _coordinatorRef.Tell(new NodeProgress(_world!.Generation, _nodeName, _epoch, ranks));
            _statusLine.Tick(ranks, _trainers.Progress[0], _world.Plan.Epochs);
        });
        Receive<TrainerNonFinite>(n =>
        {
            _metrics.NonFiniteGradient();
            _coordinatorRef.Tell(new NonFiniteGradientReported(_world!.Generation, n.Step, n.GlobalRank, _nodeName, n.Count));
        });
        Receive<FinishTraining>(f =>
        {
            if (f.Generation != _world!.Generation) return;
            _trainers.ClearAnswers();
            _trainers.TellAll(new FinishTrainer(_settings.Training.OutDir));
        });
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
        if (_haltingFor == r.NextGeneration)
        {
            // The coordinator asks again (a retry, or after the network healed): answer with the state the trainers stopped in.
            _coordinatorRef = Sender;
            if (_lastHalted?.NextGeneration == r.NextGeneration) Sender.Tell(_lastHalted);
            return;
        }
        if (_world is null || r.Generation != _world.Generation) return;
        _coordinatorRef = Sender;
        ProgressLine.Info("Generation {0} ends ({1}); {2}", r.Generation, r.Reason,
            r.Graceful ? "stopping after the next step every replica agrees on" : "dropping the step in flight");
        HaltTrainers(r.NextGeneration, r.Graceful);
    }

    /// <summary>Stops the trainers for <paramref name="nextGeneration"/>; not graceful: the step in flight is dropped.</summary>
    private void HaltTrainers(long nextGeneration, bool graceful)
    {
        if (_haltingFor != nextGeneration) _trainers.ClearHalted();
        _haltingFor = nextGeneration;
        Timers.Cancel("progress");
        if (!graceful) _generationCancelled.Cancel();
        _trainers.TellAll(new HaltTrainer(nextGeneration, graceful));
    }

    private void OnTrainerHalted(TrainerHalted h)
    {
        if (h.NextGeneration != _haltingFor || _trainers.Halted(h) is not { } states) return;
        _generationCancelled.Cancel();
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
        _lastHalted = new NodeHalted(_haltingFor, _nodeName, states, _dataPlane.Endpoint);
        if (_quorumLost)
        {
            ProgressLine.Info("Node {0}: stopped at step {1} without quorum; waiting for the network to heal", _nodeName, states.Max(t => t.GlobalStep));
            // A coordinator on this side is waiting for it too.
            if (!_coordinatorRef.IsNobody()) _coordinatorRef.Tell(_lastHalted);
            return;
        }
        ProgressLine.Info("Node {0}: stopped after step {1} for generation {2}", _nodeName, states.Max(t => t.GlobalStep), _haltingFor);
        if (_rejoinPending) RegisterWithState(states);
        else _coordinatorRef.Tell(_lastHalted);
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
        var lacking = _members.QuorumLacking(_world);
        var lost = lacking is not null;
        if (lost == _quorumLost) return;
        _quorumLost = _session.QuorumLost = lost;
        if (!lost)
        {
            ProgressLine.Info("Node {0}: sees the majority of generation {1} again; waiting for the coordinator", _nodeName, _world.Generation);
            return;
        }
        _rejoinPending = false;
        _output.Warning($"node {_nodeName}: lost the quorum of generation {_world.Generation} ({lacking}); " +
            "dropping the step in flight and training no further until the network heals");
        Timers.Cancel("register");
        HaltTrainers(Math.Max(_haltingFor, _world.Generation + 1), graceful: false);
    }

    private void Common()
    {
        Receive<WorldAssignment>(OnWorld);
        Receive<RingReady>(OnRingReady);
        // Registration answers: the first (before any world), or a rejoin's with a coordinator that took over.
        Receive<RetryRegistration>(_ => { if (_world is null || _rejoin is not null) Register(); });
        Receive<NodeRegistered>(r =>
        {
            StopRegistering();
            if (_world is null) ProgressLine.Info("Registered with the coordinator as {0}; {1}/{2} node(s) so far", r.NodeName, r.NodesRegistered, r.MinNodes);
            // Retries sent before the first answer are answered too.
            else if (_coordinatorRef.IsNobody()) ProgressLine.Info("Registered again with the coordinator at {0}", Sender.Path.Address);
            _coordinatorRef = Sender;
        });
        Receive<RegistrationRefused>(r =>
        {
            StopRegistering();
            _log.Error("The coordinator refused this node: {0}", r.Reason);
            // Coming back after being left out, or to a coordinator that went on without this node, is no configuration error.
            if (_world is not null) _session.LeftOut = true;
            EndWithError(_world is not null || _session.Rejoining ? ExitCodes.NodeLost : ExitCodes.BadConfiguration, $"the coordinator refused node {_nodeName}: {r.Reason}", $"refused: {r.Reason}");
        });
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
            EndWithError(ExitCodes.NodeLost, $"node {_nodeName}: {l.Reason}", l.Reason);
        });
        Receive<DrainNode>(_ => Drain());
        Receive<SeedLost>(l =>
        {
            if (_ending || _quorumLost) return;
            EndWithError(ExitCodes.NodeLost, $"node {_nodeName}: the seed node {l.Address} is {l.How}; the coordinator is gone" + (l.NoSeedLeft ? " and no other seed node is up" : ""),
                $"the seed node {l.Address} is {l.How}");
        });
        Receive<ClusterEvent.UnreachableMember>(m =>
        {
            _members.Unreachable(m.Member.Address);
            CheckQuorum();
            OnMemberLost(m.Member, "unreachable");
        });
        Receive<ClusterEvent.ReachableMember>(m =>
        {
            _members.Reachable(m.Member.Address);
            CheckQuorum();
        });
        Receive<ClusterEvent.IMemberEvent>(e =>
        {
            _members.Changed(e);
            _metrics.SetMembers(_members.UpCount);
            if (e is not ClusterEvent.MemberRemoved) return;
            CheckQuorum();
            OnMemberLost(e.Member, "removed");
        });
        Receive<RegistrationUnanswered>(_ => { });
        Receive<ReportProgress>(_ => { });
    }

    private void OnMemberLost(Member member, string how)
    {
        if (_ending || member.Address == _cluster.SelfAddress || !member.HasRole(ClusterBootstrap.SeedRole)) return;
        _members.SeedGone(member.Address);
        // Cut off from the majority: nothing to do but wait (the network heals, or the cluster removes this node).
        if (_quorumLost) return;
        if (_world is null && _coordinatorRef.IsNobody()) return;
        var coordinatorThere = _coordinatorRef.IsNobody() || _coordinatorRef.Path.Address == member.Address;
        if (!coordinatorThere) return;
        if (_members.SeedsUp.Count == 0 || !_settings.Elastic.Enabled || _world is null)
        {
            // Without a seed node nobody forms the world or ends the run: stop rather than wait
            // forever. Not at once: the failure detector reports the members it lost one event at
            // a time, and if this node turns out to be the one cut off (no quorum), it waits instead.
            Timers.StartSingleTimer("seed-lost", new SeedLost(member.Address, how, _members.SeedsUp.Count == 0), SeedLostGrace);
            return;
        }
        if (_rejoin is not null || _haltingFor > _world.Generation && _coordinatorRef.IsNobody()) return;
        // The coordinator singleton moves to another seed node once this one is removed: stop the
        // trainers and register again with what they hold, so the new coordinator goes on from it.
        ProgressLine.Info("Node {0}: the coordinator's seed node {1} is {2}; stopping and registering with the coordinator that takes over on {3}",
            _nodeName, member.Address, how, string.Join(", ", _members.SeedsUp));
        _coordinatorRef = ActorRefs.Nobody;
        _rejoinPending = true;
        if (_lastHalted is { } done && _haltingFor > _world.Generation && done.NextGeneration == _haltingFor && _trainers.AllHalted)
        {
            // The coordinator died during a regroup, after this node had stopped and reported: its
            // trainers are stopped already, so register with the state they stopped in.
            RegisterWithState(done.Trainers);
            return;
        }
        // Stopping already (a regroup in progress): the registration goes out once every trainer has stopped.
        if (_haltingFor > _world.Generation) return;
        HaltTrainers(_world.Generation + 1, graceful: false);
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
            EndLocally(ExitCodes.Terminated, "terminated (SIGTERM)");
            return;
        }
        ProgressLine.Info("Node {0}: SIGTERM; leaving the run at the next step boundary", _nodeName);
        _coordinatorRef.Tell(new NodeLeaving(_nodeName, "SIGTERM"));
    }

    private void Fail(string reason)
    {
        if (_ending) return;
        _log.Error("Node {0} cannot go on: {1}", _nodeName, reason);
        _output.Error($"node {_nodeName}: {reason}");
        _runCancelled.Cancel();
        (_coordinatorRef.IsNobody() ? _coordinator : _coordinatorRef).Tell(new NodeFailed(_nodeName, reason));
        // The coordinator answers with EndRun; if it cannot, end after a grace period anyway.
        Timers.StartSingleTimer("fail-exit", new EndRun(ExitCodes.NodeFailed, reason), TimeSpan.FromSeconds(15));
    }

    /// <summary>Says why on the error output, then ends the node with <paramref name="exitCode"/>.</summary>
    private void EndWithError(int exitCode, string line, string reason)
    {
        _output.Error(line);
        EndLocally(exitCode, reason);
    }

    private void EndLocally(int exitCode, string reason)
    {
        if (_ending) return;
        _ending = true;
        _runCancelled.Cancel();
        Context.System.EventStream.Publish(new EndRun(exitCode, reason));
    }

    /// <summary>How often the node tells the coordinator where its trainers are (for status and hang reports).</summary>
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromSeconds(2);

    /// <summary>How long a node that lost its only seed waits for the rest of the failure detector's news before it ends.</summary>
    private static readonly TimeSpan SeedLostGrace = TimeSpan.FromSeconds(2);

    private sealed class RetryRegistration { public static readonly RetryRegistration Instance = new(); private RetryRegistration() { } }

    private sealed class ReportProgress { public static readonly ReportProgress Instance = new(); private ReportProgress() { } }

    private sealed class RegistrationUnanswered { public static readonly RegistrationUnanswered Instance = new(); private RegistrationUnanswered() { } }

    private sealed record LocalFailure(string Reason);

    private sealed record SeedLost(Address Address, string How, bool NoSeedLeft);
}
