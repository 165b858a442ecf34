using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Event;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// The coordinator's child that watches the generation training: each node's progress, the straggler
/// (logged, and published for the seed's metrics), a step that hangs (checked every second while an epoch
/// runs) and the answer to <c>status</c>. The coordinator passes on the progress of its own generation and
/// every status query, with where the run stands. It logs as the coordinator, whose log it is given.
/// </summary>
internal sealed class RunMonitor : ReceiveActor, IWithTimers
{
    private const string HangTimer = "hang-check";

    private readonly ActorTrainSettings _settings;
    private readonly ILoggingAdapter _log;
    private readonly ProgressTracker _progress = new();
    private readonly HangDetector _hangs;
    private WorldAssignment? _world;

    public ITimerScheduler Timers { get; set; } = null!;

    public RunMonitor(ActorTrainSettings settings, ILoggingAdapter log)
    {
        (_settings, _log) = (settings, log);
        _hangs = new HangDetector(settings.Elastic.HangReportAfter);
        Receive<Watch>(w =>
        {
            _world = w.World;
            _progress.Clear();
        });
        Receive<HangChecks>(h =>
        {
            if (h.On) Timers.StartPeriodicTimer(HangTimer, HangCheck.Instance, TimeSpan.FromSeconds(1));
            else Timers.Cancel(HangTimer);
        });
        Receive<HangCheck>(_ => ReportHangs());
        Receive<NodeProgress>(OnProgress);
        Receive<Query>(q => Sender.Tell(Status(q)));
    }

    public static Props Props(ActorTrainSettings settings, ILoggingAdapter log) => Akka.Actor.Props.Create(() => new RunMonitor(settings, log));

    /// <summary>A new generation formed: earlier progress describes another world.</summary>
    public sealed record Watch(WorldAssignment World);

    /// <summary>An epoch runs (hang checks on), or the generation stopped training (off).</summary>
    public sealed record HangChecks(bool On);

    /// <summary>A <c>status</c> query, with where the run stands; the answer goes to the query's sender.</summary>
    public sealed record Query(string RequestId, CoordinatorPhase Phase, long Generation, int Epoch, IReadOnlyList<Registration<IActorRef>> Registered);

    private void OnProgress(NodeProgress p)
    {
        var before = _progress.Straggler;
        if (!_progress.Record(p, DateTime.UtcNow)) return;
        if (_progress.Straggler is { } straggler) _log.Warning("Straggler: {0}; every step waits for it", straggler);
        else ProgressLine.Info("No straggler any more ({0} has caught up)", before);
        Context.System.EventStream.Publish(new StragglerChanged(_progress.Straggler));
    }

    private void ReportHangs()
    {
        if (_world is not null && _hangs.Check(_progress, _world.Nodes, DateTime.UtcNow) is { } h)
            _log.Warning("Step {0} has waited {1:0}s: {2} wait in bucket(s) {3}; missing: {4}", h.Step, h.WaitedSeconds, h.Waiting, h.Buckets, h.Missing);
    }

    /// <summary>The world for <c>status</c>: nodes (those registered before a world forms), progress, the slowest rank and any rank the others wait for.</summary>
    private ClusterStatus Status(Query q)
    {
        var members = _world?.Nodes.Select(n => new StatusMember(n.NodeName, n.FirstRank, n.TrainerCount, n.Devices, Quorum.AddressOf(n.NodeActorPath)?.ToString() ?? n.NodeActorPath))
            ?? q.Registered.Select(r => new StatusMember(r.Name, -1, r.Message.TrainerCount, r.Message.Devices, r.Node.Path.Address.ToString()));
        var view = _progress.View(members, DateTime.UtcNow);
        return new ClusterStatus(q.RequestId, _settings.JobId, q.Phase.Name(), q.Generation, q.Epoch, _world?.Plan.Epochs ?? _settings.Training.Epochs, _world?.WorldSize ?? 0,
            view.Nodes, view.SlowestRank, view.SlowestComputeMs, view.LateRanks, q.Registered.Count, _settings.MinNodes, _progress.Straggler?.ToString() ?? "");
    }

    private sealed class HangCheck
    {
        public static readonly HangCheck Instance = new();
        private HangCheck() { }
    }
}
