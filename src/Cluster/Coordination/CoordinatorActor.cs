using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Registration = ActorTrain.Cluster.Coordination.Registration<Akka.Actor.IActorRef>;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// The coordinator (a cluster singleton on the seed role): the protocol of a run. It admits nodes,
/// forms a generation once min-nodes have registered, drives the epochs, and ends the run on every
/// node once the report is written. Elastic runs end a generation when a node is lost, a collective
/// breaks or a node joins or leaves: the nodes stop at a step boundary (<see cref="Regroup"/>), report
/// their states (<see cref="NodeHalted"/>), and the next generation goes on from the source replica;
/// only a side holding the quorum does. A coordinator that takes over (the singleton moved) regroups
/// from what the nodes bring back (<see cref="NodeRejoin"/>). The decisions are pure classes:
/// <see cref="Admission{TNode}"/>, <see cref="EpochCourse"/>, <see cref="SourceReplica"/>, <see cref="RegroupEnd"/>,
/// <see cref="Electorate{TNode}"/>, <see cref="Arrivals"/>, <see cref="Departures{TNode}"/>, <see cref="RunRecorder"/>;
/// <see cref="RegroupProtocol"/> runs a regroup, the child <see cref="RunMonitor"/> watches progress and hangs and answers
/// <c>status</c>, and the lines a person reads are <see cref="CoordinatorLines"/>.
/// </summary>
internal sealed class CoordinatorActor : ReceiveActor, IWithTimers
{
    public const string SingletonName = "coordinator";

    private readonly ActorTrainSettings _settings;
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly NodeOutput _output = NodeOutput.Get(Context.System);
    private readonly Admission<IActorRef> _admission;
    private readonly Electorate<IActorRef> _voters = new();
    private readonly RegroupProtocol _regroup;
    private readonly RunRecorder _record = new();
    private readonly EpochCourse _course;
    private readonly IActorRef _monitor;
    private readonly NamedMessageGate _gate;
    private readonly Arrivals _arrivals;
    private readonly Departures<IActorRef> _departures;
    private CoordinatorPhase _phase = CoordinatorPhase.WaitingForNodes;

    public ITimerScheduler Timers { get; set; } = null!;

    public CoordinatorActor(ActorTrainSettings settings)
    {
        _settings = settings;
        _admission = new Admission<IActorRef>(settings.JobId, settings.MaxNodes, node => node.Path.Address.ToString());
        _regroup = new RegroupProtocol(settings.Elastic, _admission, _voters, this);
        _course = new EpochCourse(_record);
        _monitor = Context.ActorOf(RunMonitor.Props(settings, _log), "monitor");
        _gate = new NamedMessageGate(_admission, _voters, _log);
        _arrivals = new Arrivals(settings.MinNodes, _admission, _regroup, _course);
        _departures = new Departures<IActorRef>(settings.Elastic.Enabled, _admission, _voters, _course, _regroup.Round);
        WaitingForNodes();
    }

    public static Props Props(ActorTrainSettings settings) => Akka.Actor.Props.Create(() => new CoordinatorActor(settings));

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.ReachableMember), typeof(ClusterEvent.MemberRemoved));
        if (_settings.StartupTimeout > TimeSpan.Zero) Timers.StartSingleTimer("startup", StartupTimedOut.Instance, _settings.StartupTimeout);
        _output.Progress(CoordinatorLines.Started(_cluster.SelfAddress, _settings.MinNodes, _settings.JobId));
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <summary>A message that names a node counts only from the node actor registered under that name (<see cref="NamedMessageGate"/>).</summary>
    protected override bool AroundReceive(Receive receive, object message) =>
        _gate.KeepsOut(message, Sender) || base.AroundReceive(receive, message);

    private long Generation => _course.Generation;

    /// <summary>The one place the phase changes: <c>status</c> reads <see cref="_phase"/>, the handlers are its state's.</summary>
    private void Enter(CoordinatorPhase phase)
    {
        _phase = phase;
        Action behaviour = phase switch
        {
            CoordinatorPhase.WaitingForNodes => WaitingForNodes,
            CoordinatorPhase.Forming => Forming,
            CoordinatorPhase.Training => Training,
            CoordinatorPhase.Regrouping => Regrouping,
            CoordinatorPhase.Finishing => Finishing,
            CoordinatorPhase.QuorumLost => QuorumLost,
            _ => Ended,
        };
        Become(behaviour);
    }

    private void WaitingForNodes()
    {
        Receive<StartupTimedOut>(_ => EndRun(ExitCodes.BadConfiguration, $"only {_admission.Members.Count} of {_settings.MinNodes} node(s) registered within {_settings.StartupTimeout.TotalSeconds:0}s (actortrain.startup-timeout)"));
        Receive<RegroupTimedOut>(t => { if (_regroup.IsCurrent(t) && _regroup.Recovering) FinishRegroup(); });
        Receive<Terminated>(t => Forget(t.ActorRef.Path.Address, "its node actor stopped"));
        Receive<ClusterEvent.MemberRemoved>(m => Forget(m.Member.Address, "it left the cluster"));
        Receive<ClusterEvent.UnreachableMember>(m => Forget(m.Member.Address, "it became unreachable"));
        CommonHandlers();
    }

    private void Forming()
    {
        Receive<NodeReady>(r => { if (_course.Ready(r)) GenerationStarted(); });
        TrainingHandlers();
    }

    private void Training()
    {
        Receive<EpochCompleted>(OnEpochCompleted);
        Receive<NonFiniteGradientReported>(n => Carry(_course.NonFinite(n)));
        TrainingHandlers();
    }

    /// <summary>The nodes stop at a step boundary and report; until then they train, and what they report of it counts.</summary>
    private void Regrouping()
    {
        Receive<NodeHalted>(h => { if (_regroup.Accept(h)) CheckRegroupComplete(); });
        Receive<RegroupTimedOut>(t => { if (_regroup.IsCurrent(t)) FinishRegroup(); });
        Training();
    }

    private void Finishing()
    {
        Receive<NodeFinished>(f => { if (_course.Finished(f)) CompleteRun(); });
        TrainingHandlers();
    }

    private void TrainingHandlers()
    {
        Receive<GenerationBroken>(b => { if (b.Generation == Generation) Carry(_departures.Broken(b, newSuspect: _regroup.Suspect(b), _phase)); });
        // A stopped actor is matched by its ref: node actors in one process (beside the coordinator) share an address.
        Receive<Terminated>(t => Carry(_departures.Lost(r => r.Node.Equals(t.ActorRef), "its node actor stopped", _phase)));
        Receive<ClusterEvent.UnreachableMember>(m => Carry(_departures.Lost(r => r.Node.Path.Address == m.Member.Address, "it became unreachable", _phase)));
        Receive<ClusterEvent.MemberRemoved>(m => Carry(_departures.Lost(r => r.Node.Path.Address == m.Member.Address, "it left the cluster", _phase)));
        Receive<RegroupTimedOut>(_ => { });
        Receive<NodeHalted>(_ => { });
        CommonHandlers();
    }

    private void CommonHandlers()
    {
        Receive<RegisterNode>(OnRegister);
        Receive<GetStatus>(Status);
        Receive<NodeProgress>(p => { if (p.Generation == Generation) _monitor.Forward(p); });
        Receive<NodeFailed>(OnNodeFailed);
        Receive<NodeLeaving>(OnNodeLeaving);
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<ClusterEvent.ReachableMember>(_ => { });
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
        Receive<StartupTimedOut>(_ => { });
    }

    /// <summary>
    /// Every registration, in every phase: <see cref="Admission{TNode}.Decide"/> says what it is, and <see cref="Arrivals"/>
    /// what it leads to. The first node of a lost coordinator's world to come back makes this coordinator take over.
    /// </summary>
    private void OnRegister(RegisterNode r)
    {
        var decision = _admission.Decide(r, Sender, new RunState(_phase, _settings.Elastic.Enabled, _regroup.Recovering, Generation, _voters.IsVoter));
        if (decision.Verdict == Verdict.Rejoin && !_regroup.Recovering) TakeOver(r.Rejoin!);
        Carry(_arrivals.Register(r, Sender, decision, _phase));
    }

    /// <summary>Min-nodes have registered: the run starts, or with --resume goes on from the furthest checkpoint offered, with its history.</summary>
    private void FirstGeneration()
    {
        Timers.Cancel("startup");
        var (source, checkpoint) = _course.Start(_settings, _admission.Members);
        if (checkpoint is not null) _output.Progress(CoordinatorLines.Resuming(checkpoint, source.Node));
        FormWorld(_admission.Members, source);
    }

    /// <summary>Before training, the nodes registered at <paramref name="address"/> are gone.</summary>
    private void Forget(Address address, string why) =>
        Carry(_departures.Unregistered(_regroup.Drop(r => r.Node.Path.Address == address, joinersToo: true), why, _regroup.Recovering));

    /// <summary>The first node of the last world that comes back sets the plan; the regroup waits for that world's nodes still in the cluster.</summary>
    private void TakeOver(NodeRejoin rejoin)
    {
        Timers.Cancel("startup");
        _course.TakeOver(rejoin);
        // The old coordinator's node, and any other that died with it, have been removed by now.
        var lastMembers = _regroup.TakeOver(rejoin, RegroupProtocol.Up(_cluster.State));
        _output.Progress(CoordinatorLines.TakingOver(rejoin.Generation, _settings.JobId, _cluster.SelfAddress, _settings.Elastic.RegroupTimeout, lastMembers));
    }

    /// <summary>Ranks the nodes and sends them the world; the generation starts once all are ready.</summary>
    private void FormWorld(IEnumerable<Registration> nodes, SourceChoice source)
    {
        var ranked = _admission.Rank(nodes, n => n.Path.Address.HasLocalScope || n.Path.Address == _cluster.SelfAddress, source.Node, source.LocalRank);
        _voters.Elect(ranked.Ordered, RegroupProtocol.VoterAddress);
        var world = _course.Form(ranked, source, _regroup.For);
        _output.Progress(CoordinatorLines.GenerationFormed(world));
        _monitor.Tell(new RunMonitor.Watch(world));
        TellMembers(world);
        Enter(CoordinatorPhase.Forming);
    }

    private void TellMembers(object message)
    {
        foreach (var r in _admission.Members) r.Node.Tell(message);
    }

    /// <summary>Every node of the generation is set up: record it and go on from its resume point.</summary>
    private void GenerationStarted()
    {
        if (_record.GenerationStarted(_course.World!) is { } recovery)
            _output.Progress(CoordinatorLines.GenerationTrains(_course.World!, recovery, _record.Generations[^1]));
        TellMembers(new HistoryUpdate(_record.History()));
        if (_course.FirstEpoch() is not { } first)
        {
            Finish();
            return;
        }
        StartEpoch(first);
        Carry(_departures.LeftWhileForming());
    }

    private void StartEpoch(int epoch)
    {
        _course.Begin(epoch);
        TellMembers(new StartEpoch(Generation, epoch));
        _monitor.Tell(new RunMonitor.HangChecks(On: true));
        Enter(CoordinatorPhase.Training);
    }

    private void OnEpochCompleted(EpochCompleted e)
    {
        if (_course.Completed(e, _admission.Members.Count) is not { } epoch) return;
        RecordEpoch(epoch);
        if (_phase == CoordinatorPhase.Regrouping) return; // the regroup decides what comes next
        if (_course.NextEpoch() is { } next) StartEpoch(next);
        else Finish();
    }

    private void RecordEpoch(EpochRecord e)
    {
        if (!_record.Record(e)) return;
        _output.Progress(CoordinatorLines.EpochDone(e, _course.Plan!.Epochs));
        TellMembers(new HistoryUpdate(_record.History()));
    }

    private void Finish()
    {
        _monitor.Tell(new RunMonitor.HangChecks(On: false));
        _course.AwaitFinal(_admission.Members.Select(r => r.Name));
        TellMembers(new FinishTraining(Generation));
        Enter(CoordinatorPhase.Finishing);
    }

    /// <summary>Every node has sent its final state: write the report and end the run.</summary>
    private void CompleteRun()
    {
        var report = _course.Report(_settings.JobId);
        if (report.TryWriteTo(_settings.Training.OutDir, out var error) is not { } where)
        {
            _log.Error("Cannot write run-report.json to {0}: {1}. The report follows:\n{2}", _settings.Training.OutDir, error, report.ToJson());
            EndRun(ExitCodes.ReportNotWritten, "training completed but run-report.json could not be written");
            return;
        }
        Context.System.EventStream.Publish(new RunReportWritten(report, Path.GetDirectoryName(where)!));
        _output.Progress(CoordinatorLines.RunComplete(report, where));
        EndRun(report.ReplicasEqual ? ExitCodes.Done : ExitCodes.ReplicasDiffer, report.ReplicasEqual ? "training complete" : "replica checksums differ");
    }

    /// <summary>Carries out what a policy decided a message leads to (<see cref="Consequence"/>).</summary>
    private void Carry(Consequence consequence)
    {
        if (consequence.Watch) Context.Watch(Sender);
        if (consequence.Reply is { } reply) Sender.Tell(reply);
        foreach (var warning in consequence.Warnings) _log.Warning("{0}", warning);
        if (consequence.Progress is { } line) _output.Progress(line);
        Action next = consequence.Step switch
        {
            NextStep.StartRun => FirstGeneration,
            NextStep.Regroup => () => BeginRegroup(consequence.Why, consequence.Graceful),
            NextStep.CheckRegroup => CheckRegroupComplete,
            NextStep.FinishRegroup => FinishRegroup,
            NextStep.ResumeRegroup => ResumeRegroup,
            NextStep.CompleteRun => CompleteRun,
            NextStep.EndRun => () => EndRun(consequence.ExitCode, consequence.Why),
            _ => () => { },
        };
        next();
    }

    /// <summary>Asks every node of the world to stop and report, for the next generation.</summary>
    private void BeginRegroup(string reason, bool graceful)
    {
        _monitor.Tell(new RunMonitor.HangChecks(On: false));
        _regroup.Begin(Generation + 1, reason);
        TellMembers(new Regroup(Generation, _regroup.For, graceful, reason));
        _output.Progress(CoordinatorLines.Regrouping(_regroup.For, reason, _settings.Elastic.RegroupTimeout, _admission.Members.Count));
        Enter(CoordinatorPhase.Regrouping);
        if (_admission.Members.Count == 0) FinishRegroup();
    }

    private void CheckRegroupComplete()
    {
        if (_regroup.Complete()) FinishRegroup();
    }

    /// <summary>Forms the next generation from the nodes that reported and those waiting to join.</summary>
    private void FinishRegroup()
    {
        if (_regroup.Stop() is { } lacking)
        {
            WaitForQuorum(lacking);
            return;
        }
        // A voter left out of the next generation and still in the cluster is downed.
        var next = _regroup.Conclude(hasHistory: _record.Generations.Count > 0, _log, _cluster.SelfAddress,
            a => { if (RegroupProtocol.InCluster(_cluster.State, a)) _cluster.Down(a); });
        if (next.Source is not { } source)
        {
            EndRun(ExitCodes.NodeLost, next.Failure!);
            return;
        }
        if (RunRecorder.FinishedBy(source.Resume) is { } finished) RecordEpoch(finished);
        _record.Next(_regroup.Round.Reason, source.StepsRedone, _regroup.Round.Started);
        FormWorld(next.Nodes, source);
    }

    /// <summary>This side lacks the previous generation's majority: it trains no further and waits.</summary>
    private void WaitForQuorum(string lacking)
    {
        _monitor.Tell(new RunMonitor.HangChecks(On: false));
        _log.Warning("Generation {0} cannot form on this side of the network: {1}. Nothing more is trained or written here; " +
            "waiting for the network to heal (or for the cluster to remove this side)", _regroup.For, lacking);
        _output.Progress(CoordinatorLines.QuorumLost(lacking));
        Enter(CoordinatorPhase.QuorumLost);
    }

    private void QuorumLost()
    {
        Receive<NodeHalted>(h => { if (_regroup.HaltedWhileLacking(h, Sender)) ResumeRegroup(); });
        Receive<ClusterEvent.ReachableMember>(_ =>
        {
            _regroup.SeenAgain(Generation, RegroupProtocol.Visible(_cluster.State));
            ResumeRegroup();
        });
        Receive<ClusterEvent.UnreachableMember>(m => _regroup.Drop(r => r.Node.Path.Address == m.Member.Address, joinersToo: false));
        Receive<ClusterEvent.MemberRemoved>(m => _regroup.Drop(r => r.Node.Path.Address == m.Member.Address, joinersToo: false));
        Receive<Terminated>(t => _regroup.Drop(r => r.Node.Equals(t.ActorRef), joinersToo: false));
        Receive<RegroupTimedOut>(_ => { });
        Receive<GenerationBroken>(_ => { });
        CommonHandlers();
    }

    /// <summary>Back from a lost quorum: the regroup goes on once the majority is seen again.</summary>
    private void ResumeRegroup()
    {
        if (!_regroup.Resume()) return;
        _output.Progress(CoordinatorLines.QuorumRegained(_regroup.For, _regroup.Round.Halts.Count));
        Enter(CoordinatorPhase.Regrouping);
        CheckRegroupComplete();
    }

    /// <summary>A node's trainer failed. Elastic: the node is lost and the others go on without it; otherwise the run ends.</summary>
    /// <remarks>AroundReceive let it through from the named node's own actor; it may be a voter no longer registered.</remarks>
    private void OnNodeFailed(NodeFailed f) => Carry(_departures.Failed(f.NodeName, Sender, f.Reason, _phase, worldFormed: _course.World is not null));

    /// <summary>A node was asked to stop (SIGTERM): every replica stops after the same step, and the next generation forms without it.</summary>
    private void OnNodeLeaving(NodeLeaving l) => Carry(_departures.Leaving(l.NodeName, Sender, l.Reason, _phase, worldFormed: _course.World is not null));

    private void EndRun(int exitCode, string reason)
    {
        if (_phase == CoordinatorPhase.Ended) return;
        _monitor.Tell(new RunMonitor.HangChecks(On: false));
        if (exitCode == ExitCodes.Done) _output.Progress(CoordinatorLines.Ending(reason));
        else _log.Error("Ending the run (exit code {0}): {1}", exitCode, reason);
        foreach (var r in _admission.All) r.Node.Tell(new EndRun(exitCode, reason));
        Context.System.EventStream.Publish(new EndRun(exitCode, reason));
        Enter(CoordinatorPhase.Ended);
    }

    private void Ended()
    {
        Receive<GetStatus>(Status);
        Receive<RegisterNode>(OnRegister);
        ReceiveAny(_ => { });
    }

    /// <summary>The monitor answers <c>status</c> with where the run stands now.</summary>
    private void Status(GetStatus g) =>
        _monitor.Forward(new RunMonitor.Query(g.RequestId, _phase, Generation, _course.Epoch, _admission.Members.ToArray()));

    private sealed class StartupTimedOut
    {
        public static readonly StartupTimedOut Instance = new();
        private StartupTimedOut() { }
    }
}
