using System.Diagnostics;
using System.Globalization;
using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// The run's history and its report: the generations (who trained, from which step, why), the
/// finished epochs, the wall time, and at the end run-report.json from the nodes' final states. The
/// history's records are the report's records. Pure: no actor, no I/O.
/// </summary>
internal sealed class RunRecorder
{
    private readonly List<GenerationRecord> _generations = [];
    private readonly List<EpochRecord> _epochs = [];
    private readonly List<EpochCompleted> _tally = [];
    private readonly Stopwatch _wall = new();
    private double _wallBefore;
    private (string Reason, int StepsRedone, long Started) _next = ("start", 0, 0);

    public IReadOnlyList<GenerationRecord> Generations => _generations;
    public IReadOnlyList<EpochRecord> Epochs => _epochs;

    public double WallSeconds => _wallBefore + _wall.Elapsed.TotalSeconds;

    public RunHistory History() => new(_generations.ToArray(), _epochs.ToArray(), WallSeconds);

    /// <summary>A run that goes on (under a new coordinator, or from a checkpoint) keeps the history it had; returns its last generation (0: none).</summary>
    public long Adopt(RunHistory history)
    {
        _generations.Clear();
        _generations.AddRange(history.Generations);
        _epochs.Clear();
        _epochs.AddRange(history.Epochs);
        _wallBefore = history.WallSeconds;
        return history.Generations.LastOrDefault()?.Generation ?? 0;
    }

    /// <summary>
    /// Why the next generation forms. <paramref name="started"/> is the <see cref="Stopwatch"/>
    /// timestamp of the event that ended the previous one; 0 for a start, which has no recovery time.
    /// </summary>
    public void Next(string reason, int stepsRedone = 0, long started = 0) => _next = (reason, stepsRedone, started);

    /// <summary>Every node of <paramref name="world"/> is set up: records the generation; returns its recovery time, null for a start.</summary>
    public double? GenerationStarted(WorldAssignment world)
    {
        double? recovery = _next.Started == 0 ? null : Stopwatch.GetElapsedTime(_next.Started).TotalSeconds;
        _generations.Add(new GenerationRecord(world.Generation, world.Nodes.Select(n => n.NodeName).ToArray(), world.WorldSize, world.Resume.Position.GlobalStep,
            _next.Reason, _next.StepsRedone, Math.Round(recovery ?? 0, 3)));
        _wall.Start();
        return recovery;
    }

    /// <summary>Takes one node's report of an epoch; once all <paramref name="nodes"/> have reported, the epoch they make together.</summary>
    public EpochRecord? Tally(EpochCompleted e, int nodes)
    {
        _tally.RemoveAll(x => x.NodeName == e.NodeName);
        _tally.Add(e);
        if (_tally.Count < nodes) return null;
        var lossSum = _tally.Sum(x => x.LossSum);
        var lossCount = _tally.Sum(x => x.LossCount);
        var metrics = _tally.Select(x => x.Metrics).FirstOrDefault(m => m is { Count: > 0 }) ?? [];
        var epoch = new EpochRecord(e.Epoch, _tally.Max(x => x.Steps), lossCount > 0 ? lossSum / lossCount : double.NaN, _tally.Max(x => x.SkippedSteps), metrics);
        _tally.Clear();
        return epoch;
    }

    /// <summary>A new epoch starts: reports of the last one no longer count.</summary>
    public void ClearTally() => _tally.Clear();

    /// <summary>Adds a finished epoch; false when it was recorded already.</summary>
    public bool Record(EpochRecord epoch)
    {
        if (_epochs.Any(x => x.Epoch == epoch.Epoch)) return false;
        _epochs.Add(epoch);
        return true;
    }

    /// <summary>The epoch a source replica had finished, as far as it knows it (no metrics); null when it finished none.</summary>
    public static EpochRecord? FinishedBy(ResumePoint resume) =>
        resume.Position is { EpochFinished: true, GlobalStep: >= 0 } p ? new EpochRecord(p.Epoch, p.GlobalStep, p.MeanLoss, p.SkippedInEpoch, null) : null;

    /// <summary>The report of a completed run of <paramref name="world"/>, from every node's final state.</summary>
    public RunReport Report(string jobId, WorldAssignment world, IReadOnlyCollection<NodeFinished> finished)
    {
        var trainers = finished.SelectMany(f => f.Trainers).OrderBy(t => t.Rank).ToList();
        static string Rank(TrainerSummary t) => t.Rank.ToString(CultureInfo.InvariantCulture);
        double Median(Func<TrainerSummary, double> of) => ReportTimings.Median(trainers.Select(of));
        return new RunReport
        {
            JobId = jobId,
            Status = "completed",
            WorldSize = world.WorldSize,
            Nodes = world.Nodes.Select(n => new ReportNode(n.NodeName, n.FirstRank, n.TrainerCount, n.Devices)).ToList(),
            Epochs = _epochs.Count,
            Steps = trainers.Count > 0 ? trainers.Max(t => t.Steps) : 0,
            SkippedSteps = _epochs.Sum(e => e.SkippedSteps),
            GlobalBatch = world.Plan.BatchSize * world.WorldSize * world.Plan.AccumulationSteps,
            Seed = world.Plan.Seed,
            FinalLoss = _epochs.Count > 0 ? _epochs[^1].MeanLoss : double.NaN,
            Metrics = _epochs.Count > 0 ? _epochs[^1].MetricsOrEmpty : new Dictionary<string, double>(),
            EpochHistory = _epochs.ToList(),
            Generations = _generations.ToList(),
            StepsRedone = _generations.Sum(g => g.StepsRedone),
            ReplicaChecksums = trainers.ToDictionary(Rank, t => t.Checksum),
            ReplicasEqual = trainers.Count > 0 && trainers.All(t => t.Checksum == trainers[0].Checksum),
            TimingsMs = new ReportTimings(Median(t => t.ComputeMs), Median(t => t.IntraNodeMs), Median(t => t.CrossNodeMs), Median(t => t.StepMs)),
            TimingsMsPerRank = trainers.ToDictionary(Rank, t => new ReportTimings(t.ComputeMs, t.IntraNodeMs, t.CrossNodeMs, t.StepMs)),
            WallSeconds = WallSeconds,
            ModelPath = finished.Select(f => f.ModelPath).FirstOrDefault(p => p is not null),
            LossCurve = finished.SelectMany(f => f.LossCurve).OrderBy(p => p.Step).Select(p => new ReportLossPoint(p.Step, p.Loss)).ToList(),
        };
    }
}
