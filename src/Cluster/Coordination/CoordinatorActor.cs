using ActorTrain.Cluster.Hosting;
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
/// <see cref="Electorate{TNode}"/>, <see cref="RunRecorder"/>; <see cref="RegroupProtocol"/> runs a regroup, and the
/// child <see cref="RunMonitor"/> watches progress and hangs and answers <c>status</c>.
/// </summary>
internal sealed class CoordinatorActor : ReceiveActor, IWithTimers
{
    public const string SingletonName = "coordinator";

    private readonly ActorTrainSettings _settings;
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Admission<IActorRef> _admission;
    private readonly Electorate<IActorRef> _voters = new();
    private readonly RegroupProtocol _regroup;
    private readonly RunRecorder _record = new();
    private readonly EpochCourse _course;
    private readonly IActorRef _monitor;
    private readonly NamedMessageGate _gate;
    private CoordinatorPhase _phase = CoordinatorPhase.WaitingForNodes;
    private bool _ended;

    public ITimerScheduler Timers { get; set; } = null!;

    public CoordinatorActor(ActorTrainSettings settings)
    {
        _settings = settings;
        _admission = new Admission<IActorRef>(settings.JobId, settings.MaxNodes, node => node.Path.Address.ToString());
        _regroup = new RegroupProtocol(settings.Elastic, _admission, _voters, this);
        _course = new EpochCourse(_record);
        _monitor = Context.ActorOf(RunMonitor.Props(settings, _log), "monitor");
        _gate = new NamedMessageGate(_admission, _voters, _log);
        WaitingForNodes();
    }

    public static Props Props(ActorTrainSettings settings) => Akka.Actor.Props.Create(() => new CoordinatorActor(settings));

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.ReachableMember), typeof(ClusterEvent.MemberRemoved));
        if (_settings.StartupTimeout > TimeSpan.Zero) Timers.StartSingleTimer("startup", StartupTimedOut.Instance, _settings.StartupTimeout);
        ProgressLine.Info("Coordinator started on {0}; waiting for {1} node(s) of job \"{2}\"", _cluster.SelfAddress, _settings.MinNodes, _settings.JobId);
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <summary>A message that names a node counts only from the node actor registered under that name (<see cref="NamedMessageGate"/>).</summary>
    protected override bool AroundReceive(Receive receive, object message) =>
        _gate.KeepsOut(message, Sender) || base.AroundReceive(receive, message);

    private bool Elastic => _settings.Elastic.Enabled;

    private long Generation => _course.Generation;

    private WorldAssignment? World => _course.World;

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
        Receive<NonFiniteGradientReported>(OnNonFinite);
        TrainingHandlers();
    }

    private void Regrouping()
    {
        Receive<NodeHalted>(h => { if (_regroup.Accept(h)) CheckRegroupComplete(); });
        Receive<RegroupTimedOut>(t => { if (_regroup.IsCurrent(t)) FinishRegroup(); });
        Receive<EpochCompleted>(OnEpochCompleted);
        Receive<NonFiniteGradientReported>(OnNonFinite);
        TrainingHandlers();
    }

    private void Finishing()
    {
        Receive<NodeFinished>(f => { if (_course.Finished(f)) CompleteRun(); });
        TrainingHandlers();
    }

    private void TrainingHandlers()
    {
        Receive<GenerationBroken>(OnGenerationBroken);
        Receive<Terminated>(t => NodeLost(t.ActorRef.Path.Address, "its node actor stopped", t.ActorRef));
        Receive<ClusterEvent.UnreachableMember>(m => NodeLost(m.Member.Address, "it became unreachable"));
        Receive<ClusterEvent.MemberRemoved>(m => NodeLost(m.Member.Address, "it left the cluster"));
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

    /// <summary>Every registration, in every phase: <see cref="Admission{TNode}.Decide"/> says what it is.</summary>
    private void OnRegister(RegisterNode r)
    {
        var decision = _admission.Decide(r, Sender, new RunState(_phase, Elastic, _regroup.Recovering, Generation, _voters.IsVoter));
        switch (decision.Verdict)
        {
            case Verdict.Refuse:
                if (decision.Logged) _log.Warning("Refused node {0} at {1}: {2}", r.NodeName, Sender.Path.Address, decision.Reason);
                Sender.Tell(new RegistrationRefused(decision.Reason));
                break;
            case Verdict.Retry:
                Sender.Tell(new NodeRegistered(r.NodeName, _admission.Members.Count, _settings.MinNodes));
                break;
            case Verdict.Member:
                if (_admission.Admit(r, Sender) is not null)
                {
                    Context.Watch(Sender);
                    ProgressLine.Info("Node {0} registered ({1} trainer(s) on {2}); {3}/{4} node(s)",
                        r.NodeName, r.TrainerCount, string.Join(",", r.Devices), _admission.Members.Count, _settings.MinNodes);
                }
                Sender.Tell(new NodeRegistered(r.NodeName, _admission.Members.Count, _settings.MinNodes));
                if (_admission.Members.Count >= _settings.MinNodes) FirstGeneration();
                break;
            case Verdict.Joiner:
                _admission.AdmitJoiner(r, Sender);
                Context.Watch(Sender);
                ProgressLine.Info("Node {0} registered mid-run ({1} trainer(s) on {2}); it joins at the next step boundary", r.NodeName, r.TrainerCount, string.Join(",", r.Devices));
                Sender.Tell(new NodeRegistered(r.NodeName, _admission.Total, _settings.MinNodes));
                // Forming or regrouping: the joiner enters with the next generation that forms. Finishing: too late; it is told when the run ends.
                if (_phase == CoordinatorPhase.Training) BeginRegroup($"node {r.NodeName} joins", graceful: true);
                break;
            case Verdict.Rejoin:
                OnRejoin(r);
                break;
            case Verdict.VoterBack:
                _regroup.VoterBack(new Registration(r, Sender));
                Context.Watch(Sender);
                Sender.Tell(new NodeRegistered(r.NodeName, _admission.Members.Count, _settings.MinNodes));
                ResumeRegroup();
                break;
        }
    }

    /// <summary>Min-nodes have registered: the run starts, or with --resume goes on from the furthest checkpoint offered, with its history.</summary>
    private void FirstGeneration()
    {
        Timers.Cancel("startup");
        _course.Start(_settings);
        if (SourceReplica.FromCheckpoint(_admission.Members) is not { } resumed)
        {
            _record.Next("start");
            FormWorld(_admission.Members, SourceReplica.Fresh);
            return;
        }
        var (source, c) = resumed;
        _course.Adopt(c.History);
        _record.Next($"resumed from {c.File}");
        ProgressLine.Info("Resuming from checkpoint {0} on node {1}: step {2}, epoch {3}", c.File, source.Node, c.State.Position.GlobalStep, c.State.Position.Epoch);
        FormWorld(_admission.Members, source);
    }

    private void Forget(Address address, string why)
    {
        foreach (var r in _regroup.Drop(r => r.Node.Path.Address == address, joinersToo: true)) _log.Warning("Node {0} dropped from registration: {1}", r.Name, why);
        if (!_regroup.Recovering) _admission.ForgetModelIfEmpty();
        else if (_regroup.Round.WaitsForAny && _regroup.Round.Complete) FinishRegroup();
    }

    /// <summary>
    /// This coordinator took over from one that was lost: a node that was training registers with its
    /// trainers' states. The regroup completes when every node of the last generation still in the
    /// cluster has come back, or after regroup-timeout.
    /// </summary>
    private void OnRejoin(RegisterNode r)
    {
        var rejoin = r.Rejoin!;
        if (!_regroup.Recovering) TakeOver(rejoin);
        if (rejoin.History.Generations.Length >= _record.Generations.Count && rejoin.History.Generations.Length > 0) _course.Adopt(rejoin.History);
        if (_admission.Admit(r, Sender) is not null) Context.Watch(Sender);
        _regroup.Rejoined(_admission.Members.First(x => x.Name == r.NodeName), r);
        Sender.Tell(new NodeRegistered(r.NodeName, _admission.Members.Count, _settings.MinNodes));
        if (_regroup.Round.Complete) FinishRegroup();
    }

    /// <summary>The first node of the last world that comes back sets the plan; the regroup waits for that world's nodes still in the cluster.</summary>
    private void TakeOver(NodeRejoin rejoin)
    {
        Timers.Cancel("startup");
        _course.TakeOver(rejoin);
        // The old coordinator's node, and any other that died with it, have been removed by now.
        var up = _cluster.State.Members.Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp).Select(m => m.Address).ToHashSet();
        var lastMembers = _regroup.TakeOver(rejoin, up);
        ProgressLine.Info("Coordinator taking over generation {0} of job \"{1}\" on {2}; waiting up to {3:0}s for its nodes ({4}) to report",
            rejoin.Generation, _settings.JobId, _cluster.SelfAddress, _settings.Elastic.RegroupTimeout.TotalSeconds, string.Join(", ", lastMembers));
    }

    /// <summary>Ranks the nodes and sends them the world; the generation starts once all are ready.</summary>
    private void FormWorld(IEnumerable<Registration> nodes, SourceChoice source)
    {
        var ranked = _admission.Rank(nodes, n => n.Path.Address.HasLocalScope || n.Path.Address == _cluster.SelfAddress, source.Node, source.LocalRank);
        _voters.Elect(ranked.Ordered, RegroupProtocol.VoterAddress);
        var world = _course.Form(ranked, source, _regroup.For);
        ProgressLine.Info("Generation {0}: world size {1} on {2} node(s), gradients over {4}: {3}", world.Generation, world.WorldSize, world.Nodes.Length,
            string.Join(", ", world.Nodes.Select(n => $"{n.NodeName} (ranks {n.FirstRank}..{n.FirstRank + n.TrainerCount - 1})")), world.Plan.Transport);
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
        var w = World!;
        if (_record.GenerationStarted(w) is { } recovery)
            ProgressLine.Info("Generation {0} trains from step {1} (epoch {2}), {3:0.0}s after {4}; {5} step(s) redone",
                w.Generation, w.Resume.Position.GlobalStep, w.Resume.Position.Epoch, recovery, _record.Generations[^1].Reason, _record.Generations[^1].StepsRedone);
        TellMembers(new HistoryUpdate(_record.History()));
        if (_course.FirstEpoch() is not { } first)
        {
            Finish();
            return;
        }
        StartEpoch(first);
        if (_admission.Members.Any(m => _voters.IsLeaving(m.Name))) BeginRegroup($"node(s) {string.Join(", ", _voters.Leaving)} leave", graceful: true);
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
        ProgressLine.Info("Epoch {0}/{1} done: mean training loss {2:F4}{3}{4}", e.Epoch, _course.Plan!.Epochs, e.MeanLoss,
            JobMetrics.Describe(e.MetricsOrEmpty), e.SkippedSteps > 0 ? $", {e.SkippedSteps} step(s) skipped" : "");
        TellMembers(new HistoryUpdate(_record.History()));
    }

    private void Finish()
    {
        _monitor.Tell(new RunMonitor.HangChecks(On: false));
        _course.AwaitFinal(_admission.Members.Select(r => r.Name));
        TellMembers(new FinishTraining(Generation));
        Enter(CoordinatorPhase.Finishing);
    }

    private void OnNonFinite(NonFiniteGradientReported n)
    {
        _log.Warning("Rank {0} on node {1} produced {2} non-finite gradient value(s) at step {3}; the step was skipped on every replica", n.Rank, n.NodeName, n.NonFiniteCount, n.Step);
        if (World?.Plan.FailOnNonFinite == true)
            EndRun(ExitCodes.NonFiniteGradient, $"rank {n.Rank} on node {n.NodeName} produced a non-finite gradient at step {n.Step} (actortrain.sync.non-finite-gradients = fail)");
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
        ProgressLine.Info("Run complete: {0} steps{1}, replicas {2}; report at {3}",
            report.Steps, JobMetrics.Describe(report.Metrics), report.ReplicasEqual ? "bitwise equal" : "DIFFER", where);
        EndRun(report.ReplicasEqual ? ExitCodes.Done : ExitCodes.ReplicasDiffer, report.ReplicasEqual ? "training complete" : "replica checksums differ");
    }

    private void OnGenerationBroken(GenerationBroken b)
    {
        if (b.Generation != Generation) return;
        var newSuspect = _regroup.Suspect(b);
        if (_phase == CoordinatorPhase.Regrouping)
        {
            if (newSuspect) CheckRegroupComplete();
            return;
        }
        _log.Warning("Node {0} reports generation {1} broken: {2}", b.NodeName, b.Generation, b.Reason);
        NodeLost(null, b.Suspect.Length > 0 ? $"{b.NodeName} lost its data-plane connection to {b.Suspect}" : $"a collective failed on {b.NodeName}: {b.Reason}");
    }

    /// <summary>A node of the world is gone (<paramref name="address"/>), or a collective failed somewhere (null: the regroup finds who is gone).</summary>
    private void NodeLost(Address? address, string why, IActorRef? actor = null)
    {
        // A stopped actor is matched by its ref: node actors in one process (beside the coordinator) share an address.
        bool Gone(Registration r) => actor is not null ? r.Node.Equals(actor) : r.Node.Path.Address == address;
        if (_ended) return;
        if (address is not null && _admission.Joiners.FirstOrDefault(Gone) is { } joiner && _admission.RemoveJoiner(joiner))
            _log.Warning("Node {0}, waiting to join, is gone: {1}", joiner.Name, why);
        var lost = address is null ? null : _admission.Members.FirstOrDefault(Gone);
        if (address is not null && lost is null) return;
        var what = lost is null ? why : $"node {lost.Name} was lost ({why})";
        if (!Elastic)
        {
            EndRun(ExitCodes.NodeLost, $"{what} during training; actortrain.elastic.enabled is off, so the run ends");
            return;
        }
        if (lost is not null) _admission.RemoveMember(lost);
        if (_phase is not (CoordinatorPhase.Finishing or CoordinatorPhase.Regrouping))
        {
            if (lost is not null) _log.Warning("{0}; the others regroup without it", what);
            BeginRegroup(what, graceful: false);
        }
        else if (lost is not null && _phase == CoordinatorPhase.Finishing)
        {
            // Training is over: the others' final states still make a report.
            var complete = _course.Excuse(lost.Name);
            _log.Warning("{0} while the run was finishing; the report leaves it out", what);
            if (complete) CompleteRun();
        }
        else if (lost is not null)
        {
            _regroup.Forget(lost.Name);
            _log.Warning("{0} during the regroup; it is left out", what);
            CheckRegroupComplete();
        }
    }

    /// <summary>Asks every node of the world to stop and report, for the next generation.</summary>
    private void BeginRegroup(string reason, bool graceful)
    {
        _monitor.Tell(new RunMonitor.HangChecks(On: false));
        _regroup.Begin(Generation + 1, reason);
        TellMembers(new Regroup(Generation, _regroup.For, graceful, reason));
        ProgressLine.Info("Regrouping for generation {0}: {1}; waiting up to {2:0}s for {3} node(s) to stop at a step boundary",
            _regroup.For, reason, _settings.Elastic.RegroupTimeout.TotalSeconds, _admission.Members.Count);
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
        var next = _regroup.Conclude(hasHistory: _record.Generations.Count > 0, _log, _cluster.SelfAddress, DownIfMember);
        if (next.Source is not { } source)
        {
            EndRun(ExitCodes.NodeLost, next.Failure!);
            return;
        }
        if (RunRecorder.FinishedBy(source.Resume) is { } finished) RecordEpoch(finished);
        _record.Next(_regroup.Round.Reason, source.StepsRedone, _regroup.Round.Started);
        FormWorld(next.Nodes, source);
    }

    /// <summary>A voter left out of the next generation and still in the cluster is downed.</summary>
    private void DownIfMember(Address address)
    {
        if (_cluster.State.Members.Any(m => m.Address == address && m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Joining))
            _cluster.Down(address);
    }

    /// <summary>This side lacks the previous generation's majority: it trains no further and waits.</summary>
    private void WaitForQuorum(string lacking)
    {
        _monitor.Tell(new RunMonitor.HangChecks(On: false));
        _log.Warning("Generation {0} cannot form on this side of the network: {1}. Nothing more is trained or written here; " +
            "waiting for the network to heal (or for the cluster to remove this side)", _regroup.For, lacking);
        ProgressLine.Info("Quorum lost: {0}; training stops on this side until the network heals", lacking);
        Enter(CoordinatorPhase.QuorumLost);
    }

    private void QuorumLost()
    {
        Receive<NodeHalted>(h => { if (_regroup.HaltedWhileLacking(h, Sender)) ResumeRegroup(); });
        Receive<ClusterEvent.ReachableMember>(_ =>
        {
            var unreachable = _cluster.State.Unreachable.Select(m => m.Address).ToHashSet();
            var members = _cluster.State.Members.Select(m => m.Address).ToHashSet();
            _regroup.SeenAgain(Generation, a => !unreachable.Contains(a) && members.Contains(a));
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
        ProgressLine.Info("Quorum regained for generation {0}: {1} node(s) of the previous generation are seen again", _regroup.For, _regroup.Round.Halts.Count);
        Enter(CoordinatorPhase.Regrouping);
        CheckRegroupComplete();
    }

    /// <summary>A node's trainer failed. Elastic: the node is lost and the others go on without it; otherwise the run ends.</summary>
    private void OnNodeFailed(NodeFailed f)
    {
        // AroundReceive let it through from the named node's own actor; it may be a voter no longer registered.
        if (_admission.Find(f.NodeName, Sender) is not { } r) return;
        if (!Elastic || World is null && _phase != CoordinatorPhase.WaitingForNodes)
        {
            EndRun(ExitCodes.NodeFailed, $"node {f.NodeName} failed: {f.Reason}");
            return;
        }
        _voters.Depart(f.NodeName);
        r.Node.Tell(new EndRun(ExitCodes.NodeFailed, $"this node failed and was left out of the run: {f.Reason}"));
        if (World is not null) NodeLost(r.Node.Path.Address, $"it failed: {f.Reason}", r.Node);
        else if (_admission.RemoveMember(r) | _admission.RemoveJoiner(r)) _log.Warning("Node {0} failed before training started and is dropped: {1}", f.NodeName, f.Reason);
    }

    /// <summary>A node was asked to stop (SIGTERM): every replica stops after the same step, and the next generation forms without it.</summary>
    private void OnNodeLeaving(NodeLeaving l)
    {
        if (_admission.Find(l.NodeName, Sender) is not { } r || _ended) return;
        if (_admission.RemoveJoiner(r) || World is null)
        {
            // Not training yet: the node simply goes.
            _admission.RemoveMember(r);
            r.Node.Tell(new EndRun(ExitCodes.Done, "left before it took part in training"));
            return;
        }
        _voters.Leave(l.NodeName);
        ProgressLine.Info("Node {0} is leaving ({1}); the others stop after the same step and go on without it", l.NodeName, l.Reason);
        // Forming or regrouping: the node is left out when the next generation forms.
        if (_phase == CoordinatorPhase.Training) BeginRegroup($"node {l.NodeName} leaves ({l.Reason})", graceful: true);
    }

    private void EndRun(int exitCode, string reason)
    {
        if (_ended) return;
        _ended = true;
        _monitor.Tell(new RunMonitor.HangChecks(On: false));
        if (exitCode == ExitCodes.Done) ProgressLine.Info("Ending the run: {0}", reason);
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
