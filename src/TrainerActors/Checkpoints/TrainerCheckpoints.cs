using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Serialization;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Actors;
using ActorTrain.TrainerActors.Training;
using Akka.Event;
using MessagePack;

namespace ActorTrain.TrainerActors.Checkpoints;

/// <summary>
/// A node's checkpoints (actortrain.checkpoint): rank 0 writes one every every-steps steps and at
/// each epoch end; a run started with <c>--resume DIR</c> offers the newest valid one to the
/// coordinator, and the trainer chosen as the source loads it before the first broadcast.
/// Besides the model and optimizer, a checkpoint holds the trainer's position in the run and the
/// run's history, so a resumed run goes on with the same epoch, sample cursor and report.
/// </summary>
internal sealed class TrainerCheckpoints : ITrainerCheckpoints
{
    /// <summary>The trainer's <see cref="TrainerHaltState"/> (position, epoch loss sums), MessagePack.</summary>
    public const string PositionSection = "position";

    private readonly CheckpointStore _store;
    private readonly CheckpointSettings _settings;
    private readonly string _jobId;
    private readonly string _fingerprint;
    private readonly Action<string> _warn;

    /// <param name="warn">Where a failed save is reported, as a whole <c>warning: …</c> line.</param>
    public TrainerCheckpoints(CheckpointStore store, CheckpointSettings settings, string jobId, string fingerprint, Action<string> warn)
    {
        _warn = warn;
        _store = store;
        _settings = settings;
        _jobId = jobId;
        _fingerprint = fingerprint;
    }

    public string Dir => _store.Dir;

    /// <summary>
    /// A node's checkpoints once its trainers have built model <paramref name="fingerprint"/>: where
    /// rank 0 writes, and with --resume the newest valid checkpoint to offer (null when there is
    /// none). Throws <see cref="InvalidOperationException"/>, <see cref="IOException"/> or
    /// <see cref="UnauthorizedAccessException"/> when the resume folder cannot be used.
    /// </summary>
    public static (TrainerCheckpoints Checkpoints, CheckpointOffer? Offer) Prepare(ActorTrainSettings settings, string fingerprint, string nodeName,
        NodeOutput output, ILoggingAdapter log)
    {
        void Warn(string warning)
        {
            log.Warning("{0}", warning);
            output.Warning(warning);
        }

        var c = settings.Checkpoint;
        var checkpoints = new TrainerCheckpoints(new CheckpointStore(c.ResolveDir(settings.Training.OutDir), c.Keep), c, settings.JobId, fingerprint,
            line => output.Write(NodeLineKind.Warning, line));
        if (c.ResumeFrom.Length == 0) return (checkpoints, null);
        var offer = Offer(c.ResumeFrom, settings.JobId, fingerprint, Warn);
        if (offer is null)
            output.Progress(ProgressLine.Format("Node {0}: no valid checkpoint in {1}; this node offers none", nodeName, c.ResumeFrom));
        else
            output.Progress(ProgressLine.Format("Node {0}: offering checkpoint {1} (step {2}, epoch {3})", nodeName, offer.File, offer.State.Position.GlobalStep, offer.State.Position.Epoch));
        return (checkpoints, offer);
    }

    public bool Due(long globalStep, bool endOfEpoch) =>
        globalStep > 0 && ((endOfEpoch && _settings.AtEpochEnd) || (!endOfEpoch && _settings.EverySteps > 0 && globalStep % _settings.EverySteps == 0));

    public void Save(CheckpointRun run, TrainerHaltState state, Replica replica, EpochRecord? finishedEpoch)
    {
        var history = run.History;
        if (finishedEpoch is not null && history.Epochs.All(e => e.Epoch != finishedEpoch.Epoch))
            history = history with { Epochs = [.. history.Epochs, finishedEpoch] };
        var checkpoint = new TrainingState
        {
            JobId = _jobId,
            ModelFingerprint = _fingerprint,
            Epoch = state.Position.Epoch,
            SamplesConsumedInEpoch = state.Position.SamplesDone,
            GlobalStep = state.Position.GlobalStep,
            WorldSize = run.WorldSize,
            Seed = run.Seed,
            CreatedUtc = DateTime.UtcNow,
            Sections = new Dictionary<string, byte[]>
            {
                [TrainingState.ModelSection] = ModelState.Save(replica.Model),
                [TrainingState.OptimizerSection] = replica.SaveOptimizerState(),
                [TrainingState.HistorySection] = MessagePackSerializer.Serialize(history, ActorTrainMessageSerializer.Options),
                [PositionSection] = MessagePackSerializer.Serialize(state with { InFlight = false }, ActorTrainMessageSerializer.Options),
            },
        };
        try
        {
            _store.Save(checkpoint);
        }
        catch (CheckpointWriteException e)
        {
            // No lost work beyond the checkpoint itself: training goes on, the operator is told.
            _warn($"warning: checkpoint at step {state.Position.GlobalStep} not written: {e.Message}; training goes on");
        }
    }

    public void Load(string file, Replica replica)
    {
        var checkpoint = CheckpointFormat.Read(file);
        ModelState.Load(replica.Model, Required(checkpoint, TrainingState.ModelSection, file));
        replica.LoadOptimizerState(Required(checkpoint, TrainingState.OptimizerSection, file));
    }

    /// <summary>
    /// The newest valid checkpoint in <paramref name="dir"/> as an offer to the coordinator; null
    /// when there is none. Newer files that do not verify are named in warnings. A checkpoint of
    /// another job or model is an error: resuming from it would train something else.
    /// </summary>
    public static CheckpointOffer? Offer(string dir, string jobId, string fingerprint, Action<string> warn)
    {
        var found = new CheckpointStore(dir, keep: int.MaxValue).LoadNewestValid();
        foreach (var w in found.Warnings) warn($"{w}; using an older checkpoint");
        if (!found.Found) return null;
        var c = found.State!;
        if (c.JobId != jobId)
            throw new InvalidOperationException($"{found.Path}: a checkpoint of job \"{c.JobId}\", not \"{jobId}\"");
        if (c.ModelFingerprint != fingerprint)
            throw new InvalidOperationException($"{found.Path}: a checkpoint of model {c.ModelFingerprint}, but this node builds model {fingerprint}");
        try
        {
            var state = MessagePackSerializer.Deserialize<TrainerHaltState>(Required(c, PositionSection, found.Path!), ActorTrainMessageSerializer.Options);
            var history = MessagePackSerializer.Deserialize<RunHistory>(Required(c, TrainingState.HistorySection, found.Path!), ActorTrainMessageSerializer.Options);
            if (state.Position.GlobalStep != c.GlobalStep)
                throw new InvalidDataException($"its position is step {state.Position.GlobalStep}, its header step {c.GlobalStep}");
            return new CheckpointOffer(Path.GetFullPath(found.Path!), state, history);
        }
        catch (Exception e) when (e is MessagePackSerializationException or InvalidDataException)
        {
            throw new InvalidOperationException($"{found.Path}: cannot read its position or history ({e.Message})", e);
        }
    }

    private static byte[] Required(TrainingState checkpoint, string section, string file) =>
        checkpoint.Section(section) ?? throw new InvalidDataException($"{file}: no \"{section}\" section");
}
