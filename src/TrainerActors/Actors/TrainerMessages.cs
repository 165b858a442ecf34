using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Sync;
using ActorTrain.TrainerActors.Checkpoints;
using ActorTrain.TrainerActors.Reporting;
using ActorTrain.TrainerActors.Training;

namespace ActorTrain.TrainerActors.Actors;

// Messages between a node actor and its trainers: local to one process, never serialized.

/// <summary>Trainer → node: the replica is built.</summary>
internal sealed record TrainerReady(int LocalRank, string Fingerprint, string Device);

/// <summary>Node → trainer: the world of a generation and its process group (the collectives, the generation's token).</summary>
internal sealed record ConfigureTrainer(
    long Generation,
    int GlobalRank,
    int WorldSize,
    TrainingPlan Plan,
    ProcessGroup Group,
    int IntraOpThreads,
    TrainerProgress Progress,
    NodeMetrics Metrics,
    IProgressSink Display,
    TimeSpan StepTimeout,
    CancellationToken RunCancelled,
    ResumePoint Resume,
    ITrainerCheckpoints? Checkpoints);

/// <summary>
/// Node → trainer: run epoch <see cref="Epoch"/> (going on from the resume point when the
/// generation started inside it). The first epoch or finish of a generation first makes the
/// replica equal to the resume point's source rank.
/// </summary>
internal sealed record RunEpoch(int Epoch);

/// <summary>Node → trainer: stop for the generation <see cref="NextGeneration"/> (see <see cref="Regroup"/>).</summary>
internal sealed record HaltTrainer(long NextGeneration, bool Graceful);

/// <summary>Trainer → node: stopped at a step boundary, holding <see cref="State"/>.</summary>
internal sealed record TrainerHalted(int LocalRank, long NextGeneration, TrainerHaltState State);

/// <summary>Trainer → node: a collective of the generation failed; the trainer stopped and waits for a regroup.</summary>
internal sealed record TrainerBroken(int LocalRank, long Generation, string Reason);

/// <summary>Where rank 0 writes checkpoints, and how the source of a resumed run reads one.</summary>
internal interface ITrainerCheckpoints
{
    /// <summary>Whether a checkpoint is due after <paramref name="globalStep"/> completed steps.</summary>
    bool Due(long globalStep, bool endOfEpoch);

    /// <summary>
    /// Writes one; a failure is logged, never thrown: training goes on. <paramref name="run"/> is
    /// what the trainer was last told of the run (by message, never read from the node's state).
    /// At an epoch's end, <paramref name="finishedEpoch"/> is that epoch's record, which the
    /// coordinator's history does not hold yet.
    /// </summary>
    void Save(CheckpointRun run, TrainerHaltState state, Replica replica, EpochRecord? finishedEpoch);

    /// <summary>Loads the replica's parameters and optimizer state from <paramref name="file"/>.</summary>
    void Load(string file, Replica replica);
}

/// <summary>Trainer → node.</summary>
internal sealed record TrainerEpochDone(int LocalRank, int Epoch, long Steps, double LossSum, long LossCount, int SkippedSteps, Dictionary<string, double> Metrics);

/// <summary>Trainer → node: this replica's gradient held non-finite values at a step.</summary>
internal sealed record TrainerNonFinite(int LocalRank, int GlobalRank, long Step, int Count);

/// <summary>Node → trainer: training is over; report the final state (rank 0 writes the model to OutDir).</summary>
internal sealed record FinishTrainer(string OutDir);

internal sealed record TrainerFinished(int LocalRank, TrainerSummary Summary, string? ModelPath, LossSample[] LossCurve);
