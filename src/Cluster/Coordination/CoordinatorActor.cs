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
public sealed class CoordinatorActor : ReceiveActor, IWithTimers
{
    public const string SingletonName = "coordinator";

    private readonly ActorTrainSettings _settings;
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly List<Registration> _registered = [];
    private readonly Stopwatch _wall = new();
    private string? _fingerprint;
    private int _trainersPerNode;
    private long _generation;
    private WorldAssignment? _world;
    private readonly HashSet<string> _pending = [];
    private int _epoch;
    private readonly List<EpochCompleted> _epochReports = [];
    private readonly List<ReportEpoch> _history = [];
    private readonly List<NodeFinished> _finished = [];
    private int _skippedSteps;
    private bool _ended;
    private string _phase = "waiting-for-nodes";
    private readonly Dictionary<string, (NodeProgress Latest, DateTime At, NodeProgress? Previous, DateTime PreviousAt)> _progress = [];

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
            typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.MemberRemoved));
        if (_settings.StartupTimeout > TimeSpan.Zero)
            Timers.StartSingleTimer("startup", StartupTimedOut.Instance, _settings.StartupTimeout);
        ProgressLine.Info("Coordinator started on {0}; waiting for {1} node(s) of job \"{2}\"", _cluster.SelfAddress, _settings.MinNodes, _settings.JobId);
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);

    private void WaitingForNodes()
    {
        Receive<RegisterNode>(OnRegister);
        Receive<StartupTimedOut>(_ => EndRun(2, $"only {_registered.Count} of {_settings.MinNodes} node(s) registered within {_settings.StartupTimeout.TotalSeconds:0}s (actortrain.startup-timeout)"));
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
            _wall.Start();
            StartNextEpoch();
        });
        TrainingHandlers();
    }

    private void Training()
    {
        _phase = "training";
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
        Receive<RegisterNode>(r =>
        {
            // A node retries until it hears back, so a retry sent before the world formed may arrive after it.
            if (_registered.Any(x => x.Message.NodeName == r.NodeName && x.Node.Equals(Sender)))
                Sender.Tell(new NodeRegistered(r.NodeName, _registered.Count, _settings.MinNodes));
            else
                Sender.Tell(new RegistrationRefused(
                    $"training of job \"{_settings.JobId}\" is already running with {_registered.Count} node(s); joining a running job is not supported yet"));
        });
        Receive<Terminated>(t => NodeLost(t.ActorRef.Path.Address, "its node actor stopped"));
        Receive<ClusterEvent.UnreachableMember>(m => NodeLost(m.Member.Address, "it became unreachable"));
        Receive<ClusterEvent.MemberRemoved>(m => NodeLost(m.Member.Address, "it left the cluster"));
        CommonHandlers();
    }

    private void CommonHandlers()
    {
        Receive<GetStatus>(g => Sender.Tell(BuildStatus(g.RequestId)));
        Receive<NodeProgress>(OnProgress);
        Receive<NodeFailed>(f => EndRun(1, $"node {f.NodeName} failed: {f.Reason}"));
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
        Receive<StartupTimedOut>(_ => { });
    }

    private void OnRegister(RegisterNode r)
    {
        var refusal = CheckRegistration(r);
        if (refusal is not null)
        {
            _log.Warning("Refused node {0} at {1}: {2}", r.NodeName, Sender.Path.Address, refusal);
            Sender.Tell(new RegistrationRefused(refusal));
            return;
        }

        if (_registered.All(x => x.Message.NodeName != r.NodeName))
        {
            _fingerprint ??= r.ModelFingerprint;
            if (_trainersPerNode == 0) _trainersPerNode = r.TrainerCount;
            _registered.Add(new Registration(r, Sender));
            Context.Watch(Sender);
            ProgressLine.Info("Node {0} registered ({1} trainer(s) on {2}); {3}/{4} node(s)",
                r.NodeName, r.TrainerCount, string.Join(",", r.Devices), _registered.Count, _settings.MinNodes);
        }
        Sender.Tell(new NodeRegistered(r.NodeName, _registered.Count, _settings.MinNodes));
        if (_registered.Count >= _settings.MinNodes) FormWorld();
    }

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
        var existing = _registered.FirstOrDefault(x => x.Message.NodeName == r.NodeName);
        if (existing is not null && !existing.Node.Equals(Sender))
            return $"node name \"{r.NodeName}\" is already taken by {existing.Node.Path.Address}; give each node its own actortrain.node-name";
        return null;
    }

    private void Forget(Address address, string why)
    {
        var gone = _registered.Where(r => r.Node.Path.Address == address).ToList();
        foreach (var g in gone)
        {
            _registered.Remove(g);
            _log.Warning("Node {0} dropped from registration: {1}", g.Message.NodeName, why);
        }
        if (_registered.Count == 0)
        {
            _fingerprint = null;
            _trainersPerNode = 0;
        }
    }

    private void FormWorld()
    {
        Timers.Cancel("startup");
        _generation++;
        // Nodes on the coordinator's own process come first, so rank 0 trains beside the
        // coordinator when the seed trains; the rest keep their registration order.
        var ordered = _registered
            .OrderBy(r => r.Node.Path.Address.HasLocalScope || r.Node.Path.Address == _cluster.SelfAddress ? 0 : 1)
            .ToList();
        var nodes = new List<WorldNode>();
        var rank = 0;
        foreach (var r in ordered)
        {
            nodes.Add(new WorldNode(r.Message.NodeName, r.Message.NodeActorPath, r.Message.EndpointPath, rank, r.Message.TrainerCount, r.Message.Devices,
                r.Message.DataPlaneEndpoint));
            rank += r.Message.TrainerCount;
        }
        var t = _settings.Training;
        _world = new WorldAssignment(_generation, nodes.ToArray(), rank,
            new TrainingPlan(t.Epochs, t.BatchSize, t.Seed, t.LogInterval, _settings.Sync.BucketSizeBytes,
                _settings.Sync.NonFiniteGradients == NonFiniteGradientPolicy.Fail, _settings.Sync.TransportChunkSizeBytes,
                _settings.Sync.Transport, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)));
        ProgressLine.Info("Generation {0}: world size {1} on {2} node(s), gradients over {4}: {3}", _generation, rank, nodes.Count,
            string.Join(", ", nodes.Select(n => $"{n.NodeName} (ranks {n.FirstRank}..{n.FirstRank + n.TrainerCount - 1})")), _settings.Sync.Transport);
        _pending.Clear();
        foreach (var r in ordered)
        {
            _pending.Add(r.Message.NodeName);
            r.Node.Tell(_world);
        }
        Become(Forming);
    }

    private void StartNextEpoch()
    {
        _epoch++;
        _epochReports.Clear();
        foreach (var r in _registered) r.Node.Tell(new StartEpoch(_generation, _epoch));
        Become(Training);
    }

    private void OnEpochCompleted(EpochCompleted e)
    {
        if (e.Generation != _generation || e.Epoch != _epoch) return;
        _epochReports.RemoveAll(x => x.NodeName == e.NodeName);
        _epochReports.Add(e);
        if (_epochReports.Count < _registered.Count) return;

        var lossSum = _epochReports.Sum(x => x.LossSum);
        var lossCount = _epochReports.Sum(x => x.LossCount);
        var accuracy = _epochReports.Select(x => x.TestAccuracy).Where(a => a >= 0).DefaultIfEmpty(-1).First();
        var skipped = _epochReports.Max(x => x.SkippedSteps);
        _skippedSteps += skipped;
        var meanLoss = lossCount > 0 ? lossSum / lossCount : double.NaN;
        _history.Add(new ReportEpoch(_epoch, _epochReports.Max(x => x.Steps), meanLoss, accuracy, skipped));
        ProgressLine.Info("Epoch {0}/{1} done: mean training loss {2:F4}{3}{4}", _epoch, _world!.Plan.Epochs, meanLoss,
            accuracy >= 0 ? $", test accuracy {accuracy:F4}" : "", skipped > 0 ? $", {skipped} step(s) skipped" : "");

        if (_epoch < _world.Plan.Epochs)
        {
            StartNextEpoch();
            return;
        }
        _pending.Clear();
        foreach (var r in _registered)
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
            EndRun(4, $"rank {n.Rank} on node {n.NodeName} produced a non-finite gradient at step {n.Step} (actortrain.sync.non-finite-gradients = fail)");
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
            EndRun(5, "training completed but run-report.json could not be written");
            return;
        }
        Context.System.EventStream.Publish(new RunReportWritten(report, Path.GetDirectoryName(where)!));
        ProgressLine.Info("Run complete: {0} steps, test accuracy {1:F4}, replicas {2}; report at {3}",
            report.Steps, report.TestAccuracy, report.ReplicasEqual ? "bitwise equal" : "DIFFER", where);
        EndRun(report.ReplicasEqual ? 0 : 6, report.ReplicasEqual ? "training complete" : "replica checksums differ");
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
            Epochs = _history.Count,
            Steps = trainers.Count > 0 ? trainers.Max(t => t.Steps) : 0,
            SkippedSteps = _skippedSteps,
            GlobalBatch = _world.Plan.BatchSize * _world.WorldSize,
            Seed = _world.Plan.Seed,
            FinalLoss = _history.Count > 0 ? _history[^1].MeanLoss : double.NaN,
            TestAccuracy = _history.Count > 0 ? _history[^1].TestAccuracy : -1,
            EpochHistory = _history.ToList(),
            ReplicaChecksums = trainers.ToDictionary(t => t.Rank.ToString(System.Globalization.CultureInfo.InvariantCulture), t => t.Checksum),
            ReplicasEqual = trainers.Count > 0 && trainers.All(t => t.Checksum == trainers[0].Checksum),
            TimingsMs = new ReportTimings(ReportTimings.Median(trainers.Select(t => t.ComputeMs)), ReportTimings.Median(trainers.Select(t => t.IntraNodeMs)),
                ReportTimings.Median(trainers.Select(t => t.CrossNodeMs)), ReportTimings.Median(trainers.Select(t => t.StepMs))),
            TimingsMsPerRank = trainers.ToDictionary(t => t.Rank.ToString(System.Globalization.CultureInfo.InvariantCulture),
                t => new ReportTimings(t.ComputeMs, t.IntraNodeMs, t.CrossNodeMs, t.StepMs)),
            WallSeconds = _wall.Elapsed.TotalSeconds,
            ModelPath = _finished.Select(f => f.ModelPath).FirstOrDefault(p => p is not null),
            LossCurve = _finished.SelectMany(f => f.LossCurve).OrderBy(p => p.Step).Select(p => new ReportLossPoint(p.Step, p.Loss)).ToList(),
        };
    }

    private void NodeLost(Address address, string why)
    {
        var lost = _registered.FirstOrDefault(r => r.Node.Path.Address == address);
        if (lost is null || _ended) return;
        EndRun(3, $"node {lost.Message.NodeName} was lost during training ({why}); recovering from a lost node is not supported yet, restart the job");
    }

    private void EndRun(int exitCode, string reason)
    {
        if (_ended) return;
        _ended = true;
        if (exitCode == 0) ProgressLine.Info("Ending the run: {0}", reason);
        else _log.Error("Ending the run (exit code {0}): {1}", exitCode, reason);
        foreach (var r in _registered) r.Node.Tell(new EndRun(exitCode, reason));
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
    }

    /// <summary>The world for <c>status</c>: nodes, progress, the slowest rank and any rank the others wait for.</summary>
    private ClusterStatus BuildStatus(string requestId)
    {
        var now = DateTime.UtcNow;
        var nodes = new List<NodeStatus>();
        var ranks = new List<(RankProgress Rank, string Node)>();
        var members = _world?.Nodes.Select(n => (n.NodeName, n.FirstRank, n.TrainerCount, n.Devices, Address: AddressOf(n.NodeActorPath))).ToList()
            ?? _registered.Select(r => (r.Message.NodeName, FirstRank: -1, r.Message.TrainerCount, r.Message.Devices, Address: r.Node.Path.Address.ToString())).ToList();
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
            late.ToArray(), _registered.Count, _settings.MinNodes);
    }

    private static string AddressOf(string actorPath) =>
        ActorPath.TryParse(actorPath, out var path) ? path.Address.ToString() : actorPath;

    private sealed record Registration(RegisterNode Message, IActorRef Node);

    private sealed class StartupTimedOut
    {
        public static readonly StartupTimedOut Instance = new();
        private StartupTimedOut() { }
    }
}
