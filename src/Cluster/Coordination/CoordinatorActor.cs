using System.Diagnostics;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// The coordinator (a cluster singleton on the seed role) holds the world: it admits nodes,
/// forms a generation once min-nodes have registered, assigns global ranks, drives the epochs,
/// collects the final state of every replica, writes run-report.json and ends the run on
/// every node. Phases: waiting for nodes → forming (nodes set up rings) → training → finishing.
/// </summary>
/// <remarks>
/// Elastic runs (actortrain.elastic.enabled): a lost node, a broken collective or a node that
/// registers mid-run ends the generation. The coordinator asks the nodes to stop at a step
/// boundary (<see cref="Regroup"/>), takes the states they report (<see cref="NodeHalted"/>),
/// leaves out those that do not answer within regroup-timeout, and forms the next generation:
/// the survivors and any new nodes, re-ranked, starting from the furthest replica's state,
/// which every replica takes first. When the coordinator itself moves to another seed node, the
/// nodes register again with what they hold (<see cref="NodeRejoin"/>) and the new coordinator
/// regroups from that.
/// </remarks>
public sealed class CoordinatorActor : ReceiveActor, IWithTimers
{
    public const string SingletonName = "coordinator";

    private readonly ActorTrainSettings _settings;
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly List<Registration> _members = [];
    private readonly List<Registration> _joiners = [];
    private readonly Stopwatch _wall = new();
    private double _wallBefore;
    private string? _fingerprint;
    private int _trainersPerNode;
    private long _generation;
    private WorldAssignment? _world;
    private TrainingPlan? _plan;
    private readonly HashSet<string> _pending = [];
    private int _epoch;
    private readonly List<EpochCompleted> _epochReports = [];
    private readonly List<EpochRecord> _epochs = [];
    private readonly List<GenerationRecord> _generations = [];
    private readonly List<NodeFinished> _finished = [];
    private bool _ended;
    private string _phase = "waiting-for-nodes";
    private readonly Dictionary<string, (NodeProgress Latest, DateTime At, NodeProgress? Previous, DateTime PreviousAt)> _progress = [];

    // The regroup in progress: the generation it forms, why, and the nodes' reports so far.
    private long _regroupFor;
    private string _regroupReason = "";
    private long _regroupStarted;
    private readonly Dictionary<string, NodeHalted> _halts = [];
    private readonly HashSet<string> _regroupExpected = [];
    private readonly HashSet<string> _suspects = [];
    private bool _recovering;
    private (string Reason, int StepsRedone, long Started) _nextRecord = ("start", 0, 0);
    private long _lastHangReport;

    // Quorum: the nodes of the generation that is training (or was, while the next one forms), and
    // those known to have stopped on their own (failed or left), which no longer count.
    private List<Quorum.Voter> _voters = [];
    private readonly Dictionary<string, Registration> _voterRegistrations = [];
    private readonly HashSet<string> _departed = [];
    private readonly HashSet<string> _leaving = [];

    public ITimerScheduler Timers { get; set; } = null!;

    public CoordinatorActor(ActorTrainSettings settings)
    {
        _settings = settings;
        WaitingForNodes();
    }

    public static Props Props(ActorTrainSettings settings) => Akka.Actor.Props.Create(() => new CoordinatorActor(settings));

    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.ReachableMember), typeof(ClusterEvent.MemberRemoved));
        if (_settings.StartupTimeout > TimeSpan.Zero)
            Timers.StartSingleTimer("startup", StartupTimedOut.Instance, _settings.StartupTimeout);
        ProgressLine.Info("Coordinator started on {0}; waiting for {1} node(s) of job \"{2}\"", _cluster.SelfAddress, _settings.MinNodes, _settings.JobId);
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <summary>
    /// A message that names a node counts only when it comes from the node actor registered under
    /// that name: one from anyone else (a stranger who reached the port, an actor of a node that was
    /// dropped) is ignored before any handler sees it, so it cannot end the run or stand in for a node.
    /// </summary>
    protected override bool AroundReceive(Receive receive, object message)
    {
        var named = message switch
        {
            NodeFailed m => m.NodeName,
            NodeHalted m => m.NodeName,
            NodeReady m => m.NodeName,
            EpochCompleted m => m.NodeName,
            GenerationBroken m => m.NodeName,
            NodeProgress m => m.NodeName,
            NodeFinished m => m.NodeName,
            NonFiniteGradientReported m => m.NodeName,
            _ => null,
        };
        if (named is not null && !AllKnown().Concat(_voterRegistrations.Values).Any(r => r.Message.NodeName == named && r.Node.Equals(Sender)))
        {
            // The first few and then every 100th: a flood must not flood the log too.
            if (++_ignoredFromStrangers <= 10 || _ignoredFromStrangers % 100 == 0)
                _log.Warning("Ignored {0} naming node {1} from {2}, which is not that node's registered actor; {3} ignored so far",
                    message.GetType().Name, named, Sender.Path, _ignoredFromStrangers);
            return true;
        }
        return base.AroundReceive(receive, message);
    }

    private long _ignoredFromStrangers;

    private bool Elastic => _settings.Elastic.Enabled;

    private void WaitingForNodes()
    {
        Receive<RegisterNode>(OnRegister);
        Receive<StartupTimedOut>(_ => EndRun(ExitCodes.BadConfiguration, $"only {_members.Count} of {_settings.MinNodes} node(s) registered within {_settings.StartupTimeout.TotalSeconds:0}s (actortrain.startup-timeout)"));
        Receive<RegroupTimedOut>(t => { if (t.Generation == _regroupFor && _recovering) FinishRegroup(); });
        Receive<Terminated>(t => Forget(t.ActorRef.Path.Address, "its node actor stopped"));
        Receive<ClusterEvent.MemberRemoved>(m => Forget(m.Member.Address, "it left the cluster"));
        Receive<ClusterEvent.UnreachableMember>(m => Forget(m.Member.Address, "it became unreachable"));
        CommonHandlers();
    }

    private void Forming()
    {
        _phase = "forming";
        Receive<NodeReady>(r =>
        {
            if (r.Generation != _generation) return;
            _pending.Remove(r.NodeName);
            if (_pending.Count > 0) return;
            GenerationStarted();
        });
        TrainingHandlers();
    }

    private void Training()
    {
        _phase = "training";
        Receive<EpochCompleted>(OnEpochCompleted);
        Receive<NonFiniteGradientReported>(OnNonFinite);
        Receive<HangCheck>(_ => ReportHangs());
        TrainingHandlers();
    }

    private void Regrouping()
    {
        _phase = "regrouping";
        Receive<NodeHalted>(OnNodeHalted);
        Receive<RegroupTimedOut>(t => { if (t.Generation == _regroupFor) FinishRegroup(); });
        Receive<EpochCompleted>(OnEpochCompleted);
        Receive<NonFiniteGradientReported>(OnNonFinite);
        TrainingHandlers();
    }

    private void Finishing()
    {
        _phase = "finishing";
        Receive<NodeFinished>(OnNodeFinished);
        TrainingHandlers();
    }

    private void TrainingHandlers()
    {
        Receive<RegisterNode>(OnRegisterWhileTraining);
        Receive<GenerationBroken>(b =>
        {
            if (b.Generation != _generation) return;
            if (_phase == "regrouping")
            {
                if (b.Suspect.Length > 0 && b.Suspect != b.NodeName && _suspects.Add(b.Suspect)) CheckRegroupComplete();
                return;
            }
            _log.Warning("Node {0} reports generation {1} broken: {2}", b.NodeName, b.Generation, b.Reason);
            if (b.Suspect.Length > 0 && b.Suspect != b.NodeName) _suspects.Add(b.Suspect);
            NodeLost(null, b.Suspect.Length > 0 ? $"{b.NodeName} lost its data-plane connection to {b.Suspect}" : $"a collective failed on {b.NodeName}: {b.Reason}");
        });
        Receive<Terminated>(t => NodeLost(t.ActorRef.Path.Address, "its node actor stopped", t.ActorRef));
        Receive<ClusterEvent.UnreachableMember>(m => NodeLost(m.Member.Address, "it became unreachable"));
        Receive<ClusterEvent.MemberRemoved>(m => NodeLost(m.Member.Address, "it left the cluster"));
        Receive<HangCheck>(_ => { });
        Receive<RegroupTimedOut>(_ => { });
        Receive<NodeHalted>(_ => { });
        CommonHandlers();
    }

    private void CommonHandlers()
    {
        Receive<GetStatus>(g => Sender.Tell(BuildStatus(g.RequestId)));
        Receive<NodeProgress>(OnProgress);
        Receive<NodeFailed>(OnNodeFailed);
        Receive<NodeLeaving>(OnNodeLeaving);
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<ClusterEvent.ReachableMember>(_ => { });
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
        Receive<StartupTimedOut>(_ => { });
    }

    private void OnRegister(RegisterNode r)
    {
        var refusal = CheckRegistration(r);
        if (refusal is not null)
        {
            Refuse(r, refusal);
            return;
        }
        if (r.Rejoin is not null && Elastic)
        {
            OnRejoin(r);
            return;
        }
        if (_recovering)
        {
            AdmitJoiner(r);
            return;
        }
        if (_members.All(x => x.Message.NodeName != r.NodeName))
        {
            Admit(r, _members);
            ProgressLine.Info("Node {0} registered ({1} trainer(s) on {2}); {3}/{4} node(s)",
                r.NodeName, r.TrainerCount, string.Join(",", r.Devices), _members.Count, _settings.MinNodes);
        }
        Sender.Tell(new NodeRegistered(r.NodeName, _members.Count, _settings.MinNodes));
        if (_members.Count >= _settings.MinNodes)
        {
            Timers.Cancel("startup");
            var t = _settings.Training;
            _plan = new TrainingPlan(t.Epochs, t.BatchSize, t.Seed, t.LogInterval, _settings.Sync.BucketSizeBytes,
                _settings.Sync.NonFiniteGradients == NonFiniteGradientPolicy.Fail, _settings.Sync.TransportChunkSizeBytes,
                _settings.Sync.Transport, [], _settings.Sync.Compression, t.AccumulationSteps);
            var offer = _members.Where(m => m.Message.Checkpoint is not null).OrderByDescending(m => m.Message.Checkpoint!.Position.GlobalStep).FirstOrDefault();
            if (offer is null)
            {
                _nextRecord = ("start", 0, 0);
                FormWorld(_members.ToList(), FreshStart());
                return;
            }
            // --resume: the run goes on from the furthest checkpoint any node offered, with its history.
            var c = offer.Message.Checkpoint!;
            AdoptHistory(c.History);
            _nextRecord = ($"resumed from {c.File}", 0, 0);
            ProgressLine.Info("Resuming from checkpoint {0} on node {1}: step {2}, epoch {3}", c.File, offer.Message.NodeName, c.Position.GlobalStep, c.Position.Epoch);
            FormWorld(_members.ToList(), ResumeFrom(c.Position, c.File), offer.Message.NodeName, 0);
        }
    }

    private void Refuse(RegisterNode r, string refusal)
    {
        _log.Warning("Refused node {0} at {1}: {2}", r.NodeName, Sender.Path.Address, refusal);
        Sender.Tell(new RegistrationRefused(refusal));
    }

    private void Admit(RegisterNode r, List<Registration> into)
    {
        _fingerprint ??= r.ModelFingerprint;
        if (_trainersPerNode == 0) _trainersPerNode = r.TrainerCount;
        into.Add(new Registration(r, Sender));
        Context.Watch(Sender);
    }

    /// <summary>A node registers while a world exists: a retry of a member, or a new node that joins at the next step boundary.</summary>
    private void OnRegisterWhileTraining(RegisterNode r)
    {
        // A node retries until it hears back, so a retry sent before the world formed may arrive after it.
        if (AllKnown().Any(x => x.Message.NodeName == r.NodeName && x.Node.Equals(Sender)))
        {
            Sender.Tell(new NodeRegistered(r.NodeName, _members.Count, _settings.MinNodes));
            return;
        }
        if (!Elastic)
        {
            Sender.Tell(new RegistrationRefused(
                $"training of job \"{_settings.JobId}\" is already running with {_members.Count} node(s), and actortrain.elastic.enabled is off"));
            return;
        }
        if (r.Rejoin is not null)
        {
            Refuse(r, $"node {r.NodeName} comes back from generation {r.Rejoin.Generation}, but this coordinator is running generation {_generation}; it was left out");
            return;
        }
        var refusal = CheckRegistration(r);
        if (refusal is not null)
        {
            Refuse(r, refusal);
            return;
        }
        if (AdmitJoiner(r) && _phase is "training") BeginRegroup($"node {r.NodeName} joins", graceful: true);
        // Forming or regrouping: the joiner enters with the next generation that forms.
        // Finishing: too late to take part; it is told when the run ends.
    }

    /// <returns>False when the node was refused (max-nodes reached).</returns>
    private bool AdmitJoiner(RegisterNode r)
    {
        if (_settings.MaxNodes > 0 && _members.Count + _joiners.Count >= _settings.MaxNodes)
        {
            Refuse(r, $"the job already has {_members.Count + _joiners.Count} node(s), actortrain.max-nodes = {_settings.MaxNodes}");
            return false;
        }
        Admit(r, _joiners);
        ProgressLine.Info("Node {0} registered mid-run ({1} trainer(s) on {2}); it joins at the next step boundary",
            r.NodeName, r.TrainerCount, string.Join(",", r.Devices));
        Sender.Tell(new NodeRegistered(r.NodeName, _members.Count + _joiners.Count, _settings.MinNodes));
        return true;
    }

    private IEnumerable<Registration> AllKnown() => _members.Concat(_joiners);

    private string? CheckRegistration(RegisterNode r)
    {
        if (r.ProtocolVersion != ActorTrainSettings.ProtocolVersion)
            return $"protocol version {r.ProtocolVersion} differs from the coordinator's {ActorTrainSettings.ProtocolVersion}";
        if (r.JobId != _settings.JobId)
            return $"job id \"{r.JobId}\" differs from the coordinator's \"{_settings.JobId}\"";
        if (_fingerprint is not null && r.ModelFingerprint != _fingerprint)
            return $"model fingerprint {r.ModelFingerprint} differs from the registered nodes' {_fingerprint} (another model definition)";
        if (r.TrainerCount < 1)
            return "a node needs at least one trainer";
        if (_trainersPerNode != 0 && r.TrainerCount != _trainersPerNode)
            return $"{r.TrainerCount} trainer(s) per node, but the registered nodes have {_trainersPerNode}; hierarchical all-reduce needs the same number on every node";
        var existing = AllKnown().FirstOrDefault(x => x.Message.NodeName == r.NodeName);
        if (existing is not null && !existing.Node.Equals(Sender))
            return $"node name \"{r.NodeName}\" is already taken by {existing.Node.Path.Address}; give each node its own actortrain.node-name";
        return null;
    }

    private void Forget(Address address, string why)
    {
        foreach (var list in new[] { _members, _joiners })
        {
            foreach (var g in list.Where(r => r.Node.Path.Address == address).ToList())
            {
                list.Remove(g);
                _halts.Remove(g.Message.NodeName);
                _regroupExpected.Remove(g.Message.NodeName);
                _log.Warning("Node {0} dropped from registration: {1}", g.Message.NodeName, why);
            }
        }
        if (_members.Count == 0 && _joiners.Count == 0 && !_recovering)
        {
            _fingerprint = null;
            _trainersPerNode = 0;
        }
        if (_recovering && _regroupExpected.Count > 0 && _regroupExpected.All(_halts.ContainsKey)) FinishRegroup();
    }

    /// <summary>
    /// This coordinator took over from one that was lost (the singleton moved): a node that was
    /// training registers with the states its trainers hold. The first such node sets the plan and
    /// history; the regroup completes when every node of the last generation still in the cluster
    /// has come back, or after regroup-timeout.
    /// </summary>
    private void OnRejoin(RegisterNode r)
    {
        var rejoin = r.Rejoin!;
        if (!_recovering)
        {
            _recovering = true;
            Timers.Cancel("startup");
            _plan = rejoin.Plan;
            _generation = rejoin.Generation;
            _regroupFor = rejoin.Generation + 1;
            _regroupReason = "the coordinator moved to another seed node";
            _regroupStarted = Stopwatch.GetTimestamp();
            _halts.Clear();
            _regroupExpected.Clear();
            // Wait for the last world's nodes that are still cluster members (the old coordinator's
            // node, and any other that died with it, have been removed by now).
            var up = _cluster.State.Members.Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp).Select(m => m.Address.ToString()).ToHashSet();
            var lastMembers = rejoin.World.Where(n => ActorPath.TryParse(n.NodeActorPath, out var p) && up.Contains(p.Address.ToString())).Select(n => n.NodeName).ToList();
            foreach (var name in lastMembers) _regroupExpected.Add(name);
            _voters = rejoin.World.Select(n => new Quorum.Voter(n.NodeName, Quorum.AddressOf(n.NodeActorPath) ?? Address.AllSystems)).ToList();
            _voterRegistrations.Clear();
            _departed.Clear();
            ProgressLine.Info("Coordinator taking over generation {0} of job \"{1}\" on {2}; waiting up to {3:0}s for its nodes ({4}) to report",
                rejoin.Generation, _settings.JobId, _cluster.SelfAddress, _settings.Elastic.RegroupTimeout.TotalSeconds, string.Join(", ", lastMembers));
            Timers.StartSingleTimer("regroup", new RegroupTimedOut(_regroupFor), _settings.Elastic.RegroupTimeout);
        }
        if (rejoin.History.Generations.Length >= _generations.Count && rejoin.History.Generations.Length > 0) AdoptHistory(rejoin.History);
        if (_members.All(x => x.Message.NodeName != r.NodeName)) Admit(r, _members);
        _voterRegistrations[r.NodeName] = _members.First(x => x.Message.NodeName == r.NodeName);
        _halts[r.NodeName] = new NodeHalted(_regroupFor, r.NodeName, rejoin.Trainers, r.DataPlaneEndpoint);
        _regroupExpected.Add(r.NodeName);
        Sender.Tell(new NodeRegistered(r.NodeName, _members.Count, _settings.MinNodes));
        if (_regroupExpected.All(_halts.ContainsKey)) FinishRegroup();
    }

    private static ResumePoint FreshStart() => new(0, 1, 0, 0, 0, false, 0, 0, 0, 0, "");

    /// <summary>Going on from a trainer's state (its source rank is set when the world is ranked).</summary>
    private static ResumePoint ResumeFrom(TrainerHaltState s, string checkpointFile) =>
        new(0, s.Epoch, s.SamplesDone, s.StepsInEpoch, s.GlobalStep, s.EpochFinished, s.LossSum, s.LossCount, s.SkippedInEpoch, s.OptimizerStateBytes, checkpointFile);

    /// <summary>A run that goes on (under a new coordinator, or from a checkpoint) keeps the history it had.</summary>
    private void AdoptHistory(RunHistory history)
    {
        _generations.Clear();
        _generations.AddRange(history.Generations);
        _epochs.Clear();
        _epochs.AddRange(history.Epochs);
        _wallBefore = history.WallSeconds;
        _generation = Math.Max(_generation, history.Generations.LastOrDefault()?.Generation ?? 0);
    }

    /// <summary>Ranks the nodes (those on the coordinator's own process first, then in the given order) and sends the world.</summary>
    private void FormWorld(List<Registration> nodes, ResumePoint resume, string? sourceNode = null, int sourceLocalRank = 0)
    {
        _generation = Math.Max(_generation + 1, _regroupFor);
        // Nodes on the coordinator's own process come first, so rank 0 trains beside the
        // coordinator when the seed trains; the rest keep their order.
        var ordered = nodes
            .OrderBy(r => r.Node.Path.Address.HasLocalScope || r.Node.Path.Address == _cluster.SelfAddress ? 0 : 1)
            .ToList();
        var worldNodes = new List<WorldNode>();
        var rank = 0;
        var sourceRank = resume.SourceRank;
        foreach (var r in ordered)
        {
            if (r.Message.NodeName == sourceNode) sourceRank = rank + sourceLocalRank;
            worldNodes.Add(new WorldNode(r.Message.NodeName, r.Message.NodeActorPath, r.Message.EndpointPath, rank, r.Message.TrainerCount, r.Message.Devices,
                r.Message.DataPlaneEndpoint));
            rank += r.Message.TrainerCount;
        }
        _members.Clear();
        _members.AddRange(ordered);
        _voters = ordered.Select(r => new Quorum.Voter(r.Message.NodeName, VoterAddress(r))).ToList();
        _voterRegistrations.Clear();
        foreach (var r in ordered) _voterRegistrations[r.Message.NodeName] = r;
        _departed.Clear();
        _leaving.Clear();
        var plan = _plan! with { DataPlaneToken = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32) };
        _world = new WorldAssignment(_generation, worldNodes.ToArray(), rank, plan, resume with { SourceRank = sourceRank }, History());
        ProgressLine.Info("Generation {0}: world size {1} on {2} node(s), gradients over {4}: {3}", _generation, rank, worldNodes.Count,
            string.Join(", ", worldNodes.Select(n => $"{n.NodeName} (ranks {n.FirstRank}..{n.FirstRank + n.TrainerCount - 1})")), plan.Transport);
        _pending.Clear();
        _progress.Clear();
        foreach (var r in ordered)
        {
            _pending.Add(r.Message.NodeName);
            r.Node.Tell(_world);
        }
        Become(Forming);
    }

    /// <summary>Every node of the generation is set up: record it and go on from its resume point.</summary>
    private void GenerationStarted()
    {
        var w = _world!;
        // A start (fresh or from a checkpoint) has no recovery time; a regroup counts from the event that ended the previous generation.
        var recovery = _nextRecord.Started == 0 ? 0 : Stopwatch.GetElapsedTime(_nextRecord.Started).TotalSeconds;
        _generations.Add(new GenerationRecord(w.Generation, w.Nodes.Select(n => n.NodeName).ToArray(), w.WorldSize, w.Resume.GlobalStep,
            _nextRecord.Reason, _nextRecord.StepsRedone, Math.Round(recovery, 3)));
        if (_nextRecord.Started != 0)
            ProgressLine.Info("Generation {0} trains from step {1} (epoch {2}), {3:0.0}s after {4}; {5} step(s) redone",
                w.Generation, w.Resume.GlobalStep, w.Resume.Epoch, recovery, _nextRecord.Reason, _nextRecord.StepsRedone);
        _wall.Start();
        var update = new HistoryUpdate(History());
        foreach (var r in _members) r.Node.Tell(update);
        var next = w.Resume.EpochFinished ? w.Resume.Epoch + 1 : w.Resume.Epoch;
        if (next > w.Plan.Epochs)
        {
            Finish();
            return;
        }
        _epoch = next - 1;
        StartNextEpoch();
        if (_leaving.Count > 0 && _members.Any(m => _leaving.Contains(m.Message.NodeName)))
            BeginRegroup($"node(s) {string.Join(", ", _leaving)} leave", graceful: true);
    }

    private void StartNextEpoch()
    {
        _epoch++;
        _epochReports.Clear();
        foreach (var r in _members) r.Node.Tell(new StartEpoch(_generation, _epoch));
        Timers.StartPeriodicTimer("hang-check", HangCheck.Instance, TimeSpan.FromSeconds(1));
        Become(Training);
    }

    private void OnEpochCompleted(EpochCompleted e)
    {
        if (e.Generation != _generation || e.Epoch != _epoch) return;
        _epochReports.RemoveAll(x => x.NodeName == e.NodeName);
        _epochReports.Add(e);
        if (_epochReports.Count < _members.Count) return;

        var lossSum = _epochReports.Sum(x => x.LossSum);
        var lossCount = _epochReports.Sum(x => x.LossCount);
        var metrics = _epochReports.Select(x => x.Metrics).FirstOrDefault(m => m is { Count: > 0 }) ?? [];
        RecordEpoch(new EpochRecord(_epoch, _epochReports.Max(x => x.Steps), lossCount > 0 ? lossSum / lossCount : double.NaN,
            _epochReports.Max(x => x.SkippedSteps), metrics));
        _epochReports.Clear();
        if (_phase == "regrouping") return; // the regroup decides what comes next

        if (_epoch < _world!.Plan.Epochs)
        {
            StartNextEpoch();
            return;
        }
        Finish();
    }

    private void RecordEpoch(EpochRecord epoch)
    {
        if (_epochs.Any(x => x.Epoch == epoch.Epoch)) return;
        _epochs.Add(epoch);
        ProgressLine.Info("Epoch {0}/{1} done: mean training loss {2:F4}{3}{4}", epoch.Epoch, _plan!.Epochs, epoch.MeanLoss,
            JobMetrics.Describe(epoch.MetricsOrEmpty), epoch.SkippedSteps > 0 ? $", {epoch.SkippedSteps} step(s) skipped" : "");
        var update = new HistoryUpdate(History());
        foreach (var r in _members) r.Node.Tell(update);
    }

    private RunHistory History() => new(_generations.ToArray(), _epochs.ToArray(), _wallBefore + _wall.Elapsed.TotalSeconds);

    private void Finish()
    {
        Timers.Cancel("hang-check");
        _pending.Clear();
        _finished.Clear();
        foreach (var r in _members)
        {
            _pending.Add(r.Message.NodeName);
            r.Node.Tell(new FinishTraining(_generation));
        }
        Become(Finishing);
    }

    private void OnNonFinite(NonFiniteGradientReported n)
    {
        _log.Warning("Rank {0} on node {1} produced {2} non-finite gradient value(s) at step {3}; the step was skipped on every replica",
            n.Rank, n.NodeName, n.NonFiniteCount, n.Step);
        if (_world?.Plan.FailOnNonFinite == true)
            EndRun(ExitCodes.NonFiniteGradient, $"rank {n.Rank} on node {n.NodeName} produced a non-finite gradient at step {n.Step} (actortrain.sync.non-finite-gradients = fail)");
    }

    private void OnNodeFinished(NodeFinished f)
    {
        if (f.Generation != _generation) return;
        _finished.RemoveAll(x => x.NodeName == f.NodeName);
        _finished.Add(f);
        _pending.Remove(f.NodeName);
        if (_pending.Count > 0) return;

        var report = BuildReport("completed");
        string where;
        try
        {
            where = report.WriteTo(_settings.Training.OutDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _log.Error("Cannot write run-report.json to {0}: {1}. The report follows:\n{2}", _settings.Training.OutDir, e.Message, report.ToJson());
            EndRun(ExitCodes.ReportNotWritten, "training completed but run-report.json could not be written");
            return;
        }
        Context.System.EventStream.Publish(new RunReportWritten(report, Path.GetDirectoryName(where)!));
        ProgressLine.Info("Run complete: {0} steps{1}, replicas {2}; report at {3}",
            report.Steps, JobMetrics.Describe(report.Metrics), report.ReplicasEqual ? "bitwise equal" : "DIFFER", where);
        EndRun(report.ReplicasEqual ? ExitCodes.Done : ExitCodes.ReplicasDiffer, report.ReplicasEqual ? "training complete" : "replica checksums differ");
    }

    private RunReport BuildReport(string status)
    {
        var trainers = _finished.SelectMany(f => f.Trainers).OrderBy(t => t.Rank).ToList();
        return new RunReport
        {
            JobId = _settings.JobId,
            Status = status,
            WorldSize = _world!.WorldSize,
            Nodes = _world.Nodes.Select(n => new ReportNode(n.NodeName, n.FirstRank, n.TrainerCount, n.Devices)).ToList(),
            Epochs = _epochs.Count,
            Steps = trainers.Count > 0 ? trainers.Max(t => t.Steps) : 0,
            SkippedSteps = _epochs.Sum(e => e.SkippedSteps),
            GlobalBatch = _world.Plan.BatchSize * _world.WorldSize * _world.Plan.AccumulationSteps,
            Seed = _world.Plan.Seed,
            FinalLoss = _epochs.Count > 0 ? _epochs[^1].MeanLoss : double.NaN,
            Metrics = _epochs.Count > 0 ? new Dictionary<string, double>(_epochs[^1].MetricsOrEmpty) : [],
            EpochHistory = _epochs.Select(e => new ReportEpoch(e.Epoch, e.Steps, e.MeanLoss, e.SkippedSteps) { Metrics = e.MetricsOrEmpty }).ToList(),
            Generations = _generations.Select(g => new ReportGeneration(g.Generation, g.Members, g.WorldSize, g.StartStep, g.Reason, g.StepsRedone, g.RecoverySeconds)).ToList(),
            StepsRedone = _generations.Sum(g => g.StepsRedone),
            ReplicaChecksums = trainers.ToDictionary(t => t.Rank.ToString(System.Globalization.CultureInfo.InvariantCulture), t => t.Checksum),
            ReplicasEqual = trainers.Count > 0 && trainers.All(t => t.Checksum == trainers[0].Checksum),
            TimingsMs = new ReportTimings(ReportTimings.Median(trainers.Select(t => t.ComputeMs)), ReportTimings.Median(trainers.Select(t => t.IntraNodeMs)),
                ReportTimings.Median(trainers.Select(t => t.CrossNodeMs)), ReportTimings.Median(trainers.Select(t => t.StepMs))),
            TimingsMsPerRank = trainers.ToDictionary(t => t.Rank.ToString(System.Globalization.CultureInfo.InvariantCulture),
                t => new ReportTimings(t.ComputeMs, t.IntraNodeMs, t.CrossNodeMs, t.StepMs)),
            WallSeconds = _wallBefore + _wall.Elapsed.TotalSeconds,
            ModelPath = _finished.Select(f => f.ModelPath).FirstOrDefault(p => p is not null),
            LossCurve = _finished.SelectMany(f => f.LossCurve).OrderBy(p => p.Step).Select(p => new ReportLossPoint(p.Step, p.Loss)).ToList(),
        };
    }

    /// <summary>A node of the world is gone (<paramref name="address"/>), or a collective failed somewhere (null: who is gone is found by the regroup).</summary>
    private void NodeLost(Address? address, string why, IActorRef? actor = null)
    {
        // A stopped actor is matched by its ref: node actors in one process (beside the coordinator) share an address.
        bool Gone(Registration r) => actor is not null ? r.Node.Equals(actor) : r.Node.Path.Address == address;
        if (_ended) return;
        if (address is not null)
        {
            var joiner = _joiners.FirstOrDefault(Gone);
            if (joiner is not null)
            {
                _joiners.Remove(joiner);
                _log.Warning("Node {0}, waiting to join, is gone: {1}", joiner.Message.NodeName, why);
            }
        }
        var lost = address is null ? null : _members.FirstOrDefault(Gone);
        if (address is not null && lost is null) return;
        var what = lost is null ? why : $"node {lost.Message.NodeName} was lost ({why})";
        if (!Elastic)
        {
            EndRun(ExitCodes.NodeLost, $"{what} during training; actortrain.elastic.enabled is off, so the run ends");
            return;
        }
        if (_phase == "finishing")
        {
            // Training is over: the others' final states still make a report.
            if (lost is null) return;
            _members.Remove(lost);
            _pending.Remove(lost.Message.NodeName);
            _log.Warning("{0} while the run was finishing; the report leaves it out", what);
            if (_pending.Count == 0 && _finished.Count > 0) OnNodeFinished(_finished[^1]);
            return;
        }
        if (_phase == "regrouping")
        {
            if (lost is null) return;
            _members.Remove(lost);
            _regroupExpected.Remove(lost.Message.NodeName);
            _halts.Remove(lost.Message.NodeName);
            _log.Warning("{0} during the regroup; it is left out", what);
            CheckRegroupComplete();
            return;
        }
        if (lost is not null)
        {
            _members.Remove(lost);
            _log.Warning("{0}; the others regroup without it", what);
        }
        BeginRegroup(what, graceful: false);
    }

    /// <summary>Asks every node of the world to stop and report, for the next generation.</summary>
    private void BeginRegroup(string reason, bool graceful)
    {
        Timers.Cancel("hang-check");
        _regroupFor = _generation + 1;
        _regroupReason = reason;
        _regroupStarted = Stopwatch.GetTimestamp();
        _halts.Clear();
        _regroupExpected.Clear();
        foreach (var r in _members)
        {
            _regroupExpected.Add(r.Message.NodeName);
            r.Node.Tell(new Regroup(_generation, _regroupFor, graceful, reason));
        }
        ProgressLine.Info("Regrouping for generation {0}: {1}; waiting up to {2:0}s for {3} node(s) to stop at a step boundary",
            _regroupFor, reason, _settings.Elastic.RegroupTimeout.TotalSeconds, _members.Count);
        Timers.StartSingleTimer("regroup", new RegroupTimedOut(_regroupFor), _settings.Elastic.RegroupTimeout);
        Become(Regrouping);
        if (_members.Count == 0) FinishRegroup();
    }

    private void OnNodeHalted(NodeHalted h)
    {
        if (h.NextGeneration != _regroupFor || !_regroupExpected.Contains(h.NodeName)) return;
        _halts[h.NodeName] = h;
        CheckRegroupComplete();
    }

    /// <summary>
    /// Complete once every node has reported. A node another reported unreachable on the data
    /// plane (a suspect) gets only a short grace once all the others have answered: a live node
    /// answers a regroup within one step's compute, a dead one never does.
    /// </summary>
    private void CheckRegroupComplete()
    {
        if (_regroupExpected.All(_halts.ContainsKey))
        {
            FinishRegroup();
            return;
        }
        if (_regroupExpected.Where(n => !_suspects.Contains(n)).All(_halts.ContainsKey) && !Timers.IsTimerActive("suspect-grace"))
            Timers.StartSingleTimer("suspect-grace", new RegroupTimedOut(_regroupFor), SuspectGrace);
    }

    /// <summary>How long a regroup waits for a suspect once every other node has answered.</summary>
    private TimeSpan SuspectGrace => TimeSpan.FromTicks(Math.Min(_settings.Elastic.RegroupTimeout.Ticks, TimeSpan.FromSeconds(2).Ticks));

    /// <summary>Forms the next generation from the nodes that reported and those waiting to join.</summary>
    private void FinishRegroup()
    {
        Timers.Cancel("regroup");
        Timers.Cancel("suspect-grace");
        _recovering = false;
        // Only a side that sees the majority of the previous generation may form the next one; the
        // silent nodes may be training on the other side, so nothing is decided about them here.
        if (QuorumLacking() is { } lacking)
        {
            WaitForQuorum(lacking);
            return;
        }
        foreach (var gone in _members.Where(m => _leaving.Contains(m.Message.NodeName)).ToList())
        {
            _members.Remove(gone);
            _halts.Remove(gone.Message.NodeName);
            gone.Node.Tell(new EndRun(ExitCodes.Done, $"left the run after step {_halts.Values.SelectMany(h => h.Trainers).Select(t => t.GlobalStep).DefaultIfEmpty(0).Max()}"));
        }
        foreach (var silent in _members.Where(m => !_halts.ContainsKey(m.Message.NodeName)).ToList())
        {
            var why = _suspects.Contains(silent.Message.NodeName)
                ? $"its ring neighbour lost the data-plane connection to it, and it did not answer within {SuspectGrace.TotalSeconds:0}s"
                : $"it did not stop and report within {_settings.Elastic.RegroupTimeout.TotalSeconds:0}s (actortrain.elastic.regroup-timeout)";
            _log.Warning("Node {0} is left out of generation {1}: {2}", silent.Message.NodeName, _regroupFor, why);
            silent.Node.Tell(new LeftOut(_regroupFor, $"left out of generation {_regroupFor}: {why}"));
            _members.Remove(silent);
        }
        DownLostVoters();
        _suspects.Clear();
        // The data-plane address a node reports with its halt is the one its new listener has.
        var survivors = _members.Select(m => m with { Message = m.Message with { DataPlaneEndpoint = _halts[m.Message.NodeName].DataPlaneEndpoint } }).ToList();
        var states = _halts.Values.Where(h => survivors.Any(m => m.Message.NodeName == h.NodeName))
            .SelectMany(h => h.Trainers.Select(t => (Node: h.NodeName, State: t))).ToList();
        if (survivors.Count == 0 || states.All(s => s.State.GlobalStep < 0) && _generations.Count > 0)
        {
            EndRun(ExitCodes.NodeLost, $"no node holding the model's state is left after {_regroupReason}");
            return;
        }
        var incoming = _joiners.ToList();
        _joiners.Clear();
        if (survivors.Count + incoming.Count < _settings.Elastic.MinSurvivingNodes)
        {
            EndRun(ExitCodes.NodeLost, $"{_regroupReason}: only {survivors.Count + incoming.Count} node(s) remain, fewer than actortrain.elastic.min-surviving-nodes = {_settings.Elastic.MinSurvivingNodes}");
            return;
        }
        // The source is the replica that got furthest; a tie goes to one whose last step completed.
        var source = states.OrderByDescending(s => s.State.GlobalStep).ThenBy(s => s.State.InFlight).ThenBy(s => s.State.Rank).First();
        var stepsRedone = states.Any(s => s.State.InFlight && s.State.GlobalStep == source.State.GlobalStep) ? 1 : 0;
        var sourceNode = _halts[source.Node];
        var sourceLocal = Array.IndexOf(sourceNode.Trainers, source.State);
        var s = source.State;
        var resume = s.GlobalStep < 0 ? FreshStart() : ResumeFrom(s, "");
        if (s.EpochFinished && _epochs.All(x => x.Epoch != s.Epoch) && s.GlobalStep >= 0)
            RecordEpoch(new EpochRecord(s.Epoch, s.GlobalStep, s.LossCount > 0 ? s.LossSum / s.LossCount : double.NaN, s.SkippedInEpoch, null));
        _nextRecord = (_regroupReason, stepsRedone, _regroupStarted);
        FormWorld(survivors.Concat(incoming).ToList(), resume, s.GlobalStep < 0 ? null : source.Node, Math.Max(0, sourceLocal));
    }

    private static Address VoterAddress(Registration r) => Quorum.AddressOf(r.Message.NodeActorPath) ?? r.Node.Path.Address;

    /// <summary>Null when this side may form the next generation; otherwise why not.</summary>
    private string? QuorumLacking()
    {
        if (_settings.Elastic.Quorum == QuorumPolicy.Off) return null;
        var voters = _voters.Where(v => !_departed.Contains(v.Name)).ToList();
        bool Seen(string name) => _halts.ContainsKey(name) && _members.Any(m => m.Message.NodeName == name);
        return Quorum.Holds(voters, Seen) ? null : Quorum.Lacking(voters.Count(v => Seen(v.Name)), voters.Count);
    }

    /// <summary>
    /// The previous generation's nodes that are not in the next one are taken out of the cluster,
    /// so membership converges (new nodes can become Up, and leaving at the end does not wait for
    /// the failure detector and the split-brain resolver), and a node cut off on the other side of
    /// a partition learns it was removed when the network heals (it then rejoins as a new member).
    /// Never this process (a node beside the coordinator): Cluster.Down reads a local address as
    /// its own; nor an address that a surviving node shares.
    /// </summary>
    private void DownLostVoters()
    {
        var kept = _members.Select(VoterAddress).ToHashSet();
        foreach (var v in _voters.Where(v => _members.All(m => m.Message.NodeName != v.Name) && !_leaving.Contains(v.Name)))
        {
            if (v.Address.HasLocalScope || v.Address == _cluster.SelfAddress || v.Address == Address.AllSystems || kept.Contains(v.Address)) continue;
            if (_cluster.State.Members.Any(m => m.Address == v.Address && m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Joining))
                _cluster.Down(v.Address);
        }
    }

    /// <summary>This side lacks the previous generation's majority: it trains no further and waits.</summary>
    private void WaitForQuorum(string lacking)
    {
        Timers.Cancel("hang-check");
        _log.Warning("Generation {0} cannot form on this side of the network: {1}. Nothing more is trained or written here; " +
            "waiting for the network to heal (or for the cluster to remove this side)", _regroupFor, lacking);
        ProgressLine.Info("Quorum lost: {0}; training stops on this side until the network heals", lacking);
        Become(QuorumLost);
    }

    private void QuorumLost()
    {
        _phase = "quorum-lost";
        Receive<NodeHalted>(h =>
        {
            if (h.NextGeneration != _regroupFor || !_voterRegistrations.TryGetValue(h.NodeName, out var r) || !r.Node.Equals(Sender)) return;
            _halts[h.NodeName] = h;
            Readmit(r);
            ResumeRegroup();
        });
        Receive<ClusterEvent.ReachableMember>(_ =>
        {
            // Every voter this side sees again is asked for its state (those that stopped for lack of
            // quorum answer at once with the state they stopped in).
            var unreachable = _cluster.State.Unreachable.Select(m => m.Address).ToHashSet();
            var members = _cluster.State.Members.Select(m => m.Address).ToHashSet();
            foreach (var r in _voterRegistrations.Values.Where(r => !_departed.Contains(r.Message.NodeName) && !_members.Contains(r)))
            {
                var address = r.Node.Path.Address;
                if (!address.HasLocalScope && (unreachable.Contains(address) || !members.Contains(address))) continue;
                Readmit(r);
                r.Node.Tell(new Regroup(_generation, _regroupFor, false, "the network healed"));
            }
            ResumeRegroup();
        });
        Receive<RegisterNode>(r =>
        {
            // A voter that lost its coordinator registers again with the state it stopped in.
            if (r.Rejoin is { } rejoin && _voters.Any(v => v.Name == r.NodeName) && r.JobId == _settings.JobId)
            {
                var registration = new Registration(r, Sender);
                _members.RemoveAll(m => m.Message.NodeName == r.NodeName);
                _voterRegistrations[r.NodeName] = registration;
                Context.Watch(Sender);
                _halts[r.NodeName] = new NodeHalted(_regroupFor, r.NodeName, rejoin.Trainers, r.DataPlaneEndpoint);
                Readmit(registration);
                Sender.Tell(new NodeRegistered(r.NodeName, _members.Count, _settings.MinNodes));
                ResumeRegroup();
                return;
            }
            var refusal = CheckRegistration(r);
            if (refusal is not null) Refuse(r, refusal);
            else if (r.Rejoin is null) AdmitJoiner(r);
        });
        Receive<ClusterEvent.UnreachableMember>(m => DropUnseen(r => r.Node.Path.Address == m.Member.Address));
        Receive<ClusterEvent.MemberRemoved>(m => DropUnseen(r => r.Node.Path.Address == m.Member.Address));
        Receive<Terminated>(t => DropUnseen(r => r.Node.Equals(t.ActorRef)));
        Receive<RegroupTimedOut>(_ => { });
        Receive<GenerationBroken>(_ => { });
        CommonHandlers();
    }

    private void Readmit(Registration r)
    {
        if (!_members.Contains(r)) _members.Add(r);
        _regroupExpected.Add(r.Message.NodeName);
    }

    private void DropUnseen(Func<Registration, bool> gone)
    {
        foreach (var r in _members.Where(gone).ToList())
        {
            _members.Remove(r);
            _halts.Remove(r.Message.NodeName);
            _regroupExpected.Remove(r.Message.NodeName);
        }
    }

    /// <summary>Back from a lost quorum: the regroup goes on once the majority is seen again.</summary>
    private void ResumeRegroup()
    {
        if (QuorumLacking() is not null) return;
        ProgressLine.Info("Quorum regained for generation {0}: {1} node(s) of the previous generation are seen again", _regroupFor, _halts.Count);
        Timers.StartSingleTimer("regroup", new RegroupTimedOut(_regroupFor), _settings.Elastic.RegroupTimeout);
        Become(Regrouping);
        CheckRegroupComplete();
    }

    /// <summary>A node's trainer failed. Elastic: the node is lost and the others go on without it; otherwise the run ends.</summary>
    private void OnNodeFailed(NodeFailed f)
    {
        // AroundReceive let it through from the named node's own actor; it may be a voter no longer registered.
        var r = AllKnown().FirstOrDefault(x => x.Message.NodeName == f.NodeName && x.Node.Equals(Sender));
        if (r is null) return;
        if (!Elastic || _world is null && _phase != "waiting-for-nodes")
        {
            EndRun(ExitCodes.NodeFailed, $"node {f.NodeName} failed: {f.Reason}");
            return;
        }
        _departed.Add(f.NodeName);
        r.Node.Tell(new EndRun(ExitCodes.NodeFailed, $"this node failed and was left out of the run: {f.Reason}"));
        if (_world is null)
        {
            _members.Remove(r);
            _joiners.Remove(r);
            _log.Warning("Node {0} failed before training started and is dropped: {1}", f.NodeName, f.Reason);
            return;
        }
        NodeLost(r.Node.Path.Address, $"it failed: {f.Reason}", r.Node);
    }

    /// <summary>A node was asked to stop (SIGTERM): every replica stops after the same step, and the next generation forms without it.</summary>
    private void OnNodeLeaving(NodeLeaving l)
    {
        var r = AllKnown().FirstOrDefault(x => x.Message.NodeName == l.NodeName && x.Node.Equals(Sender));
        if (r is null || _ended) return;
        if (_joiners.Remove(r) || _world is null)
        {
            // Not training yet: the node simply goes.
            _members.Remove(r);
            r.Node.Tell(new EndRun(ExitCodes.Done, "left before it took part in training"));
            return;
        }
        _departed.Add(l.NodeName);
        _leaving.Add(l.NodeName);
        ProgressLine.Info("Node {0} is leaving ({1}); the others stop after the same step and go on without it", l.NodeName, l.Reason);
        if (_phase == "training") BeginRegroup($"node {l.NodeName} leaves ({l.Reason})", graceful: true);
        // Forming or regrouping: the node is left out when the next generation forms.
    }

    private void EndRun(int exitCode, string reason)
    {
        if (_ended) return;
        _ended = true;
        if (exitCode == ExitCodes.Done) ProgressLine.Info("Ending the run: {0}", reason);
        else _log.Error("Ending the run (exit code {0}): {1}", exitCode, reason);
        foreach (var r in AllKnown()) r.Node.Tell(new EndRun(exitCode, reason));
        Context.System.EventStream.Publish(new EndRun(exitCode, reason));
        Become(Ended);
    }

    private void Ended()
    {
        _phase = "ended";
        Receive<GetStatus>(g => Sender.Tell(BuildStatus(g.RequestId)));
        Receive<RegisterNode>(_ => Sender.Tell(new RegistrationRefused("the run has ended")));
        ReceiveAny(_ => { });
    }

    private void OnProgress(NodeProgress p)
    {
        if (p.Generation != _generation) return;
        var now = DateTime.UtcNow;
        _progress[p.NodeName] = _progress.TryGetValue(p.NodeName, out var old)
            ? (p, now, old.Latest, old.At)
            : (p, now, null, default);
        var straggler = Stragglers.Find(_progress.SelectMany(x => x.Value.Latest.Ranks.Select(r => (x.Key, r))));
        if (straggler?.Node == _straggler?.Node && straggler?.Rank == _straggler?.Rank) return;
        if (straggler is not null)
            _log.Warning("Straggler: {0}; every step waits for it", straggler);
        else
            ProgressLine.Info("No straggler any more ({0} has caught up)", _straggler);
        _straggler = straggler;
        Context.System.EventStream.Publish(new StragglerChanged(straggler));
    }

    private Straggler? _straggler;

    /// <summary>
    /// A step that has waited past hang-report-after for its contributions: name the ranks that
    /// wait (and the bucket) and the ranks they wait for (behind, computing, or silent).
    /// </summary>
    private void ReportHangs()
    {
        var deadline = _settings.Elastic.HangReportAfter;
        if (_world is null || Stopwatch.GetElapsedTime(_lastHangReport) < deadline) return;
        var now = DateTime.UtcNow;
        var waiting = _progress.SelectMany(p => p.Value.Latest.Ranks.Where(r => r.WaitingBucket >= 0 && r.CurrentStepMs > deadline.TotalMilliseconds)
            .Select(r => (Node: p.Key, Rank: r))).ToList();
        if (waiting.Count == 0) return;
        var step = waiting.Max(w => w.Rank.Step);
        var missing = new List<string>();
        foreach (var node in _world.Nodes)
        {
            if (!_progress.TryGetValue(node.NodeName, out var p) || (now - p.At) > TimeSpan.FromSeconds(5))
            {
                var age = _progress.TryGetValue(node.NodeName, out var q) ? $"{(now - q.At).TotalSeconds:0}s ago" : "never";
                missing.Add($"ranks {node.FirstRank}..{node.FirstRank + node.TrainerCount - 1} on node {node.NodeName} (no progress report since {age})");
                continue;
            }
            foreach (var r in p.Latest.Ranks.Where(r => r.WaitingBucket < 0 || r.Step < step))
                missing.Add($"rank {r.Rank} on node {node.NodeName} ({(r.Step < step ? $"at step {r.Step}" : "not in the reduction")})");
        }
        _lastHangReport = Stopwatch.GetTimestamp();
        _log.Warning("Step {0} has waited {1:0}s: {2} wait in bucket(s) {3}; missing: {4}", step,
            waiting.Max(w => w.Rank.CurrentStepMs) / 1000, string.Join(", ", waiting.Select(w => $"rank {w.Rank.Rank} ({w.Node})")),
            string.Join(",", waiting.Select(w => w.Rank.WaitingBucket).Distinct().Order()),
            missing.Count > 0 ? string.Join("; ", missing) : "none found (a slow network?)");
    }

    /// <summary>The world for <c>status</c>: nodes, progress, the slowest rank and any rank the others wait for.</summary>
    private ClusterStatus BuildStatus(string requestId)
    {
        var now = DateTime.UtcNow;
        var nodes = new List<NodeStatus>();
        var ranks = new List<(RankProgress Rank, string Node)>();
        var members = _world?.Nodes.Select(n => (n.NodeName, n.FirstRank, n.TrainerCount, n.Devices, Address: AddressOf(n.NodeActorPath))).ToList()
            ?? _members.Select(r => (r.Message.NodeName, FirstRank: -1, r.Message.TrainerCount, r.Message.Devices, Address: r.Node.Path.Address.ToString())).ToList();
        foreach (var (name, firstRank, trainers, devices, address) in members)
        {
            long step = 0;
            double stepsPerSecond = 0, age = -1;
            if (_progress.TryGetValue(name, out var p))
            {
                step = p.Latest.Ranks.Length > 0 ? p.Latest.Ranks.Min(r => r.Step) : 0;
                age = (now - p.At).TotalSeconds;
                if (p.Previous is { Ranks.Length: > 0 } prev && p.At > p.PreviousAt)
                    stepsPerSecond = (step - prev.Ranks.Min(r => r.Step)) / (p.At - p.PreviousAt).TotalSeconds;
                ranks.AddRange(p.Latest.Ranks.Select(r => (r, name)));
            }
            nodes.Add(new NodeStatus(name, address, firstRank, trainers, devices, step, stepsPerSecond, age));
        }

        var slowest = ranks.OrderByDescending(r => r.Rank.RecentComputeMs).FirstOrDefault();
        var late = new List<LateRank>();
        if (ranks.Count > 0)
        {
            var leading = ranks.Max(r => r.Rank.Step);
            var typicalStep = ranks.Select(r => r.Rank.RecentStepMs).Order().ElementAt(ranks.Count / 2);
            foreach (var (r, node) in ranks)
            {
                // Behind the others, or in a step far longer than steps usually take.
                var stuck = typicalStep > 0 && r.CurrentStepMs > Math.Max(5 * typicalStep, 2000);
                if (r.Step < leading || stuck) late.Add(new LateRank(r.Rank, node, r.Step, leading - r.Step, r.CurrentStepMs));
            }
        }
        return new ClusterStatus(requestId, _settings.JobId, _phase, _generation, _epoch, _world?.Plan.Epochs ?? _settings.Training.Epochs,
            _world?.WorldSize ?? 0, nodes.ToArray(), slowest.Node is null ? -1 : slowest.Rank.Rank, slowest.Node is null ? 0 : slowest.Rank.RecentComputeMs,
            late.ToArray(), _members.Count, _settings.MinNodes, _straggler?.ToString() ?? "");
    }

    private static string AddressOf(string actorPath) =>
        ActorPath.TryParse(actorPath, out var path) ? path.Address.ToString() : actorPath;

    private sealed record Registration(RegisterNode Message, IActorRef Node);

    private sealed record RegroupTimedOut(long Generation);

    private sealed class StartupTimedOut
    {
        public static readonly StartupTimedOut Instance = new();
        private StartupTimedOut() { }
    }

    private sealed class HangCheck
    {
        public static readonly HangCheck Instance = new();
        private HangCheck() { }
    }
}
