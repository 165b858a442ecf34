using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Transport;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.TrainerActors.Actors;

// Messages between a node actor and its trainers: local to one process, never serialized.

/// <summary>Trainer → node: the replica is built.</summary>
public sealed record TrainerReady(int LocalRank, string Fingerprint, string Device);

/// <summary>Node → trainer: the world of a generation and the collectives to use in it.</summary>
public sealed record ConfigureTrainer(
    long Generation,
    int GlobalRank,
    int WorldSize,
    TrainingPlan Plan,
    IIntraNodeCollective IntraNode,
    IRingTransport? CrossNode,
    int IntraOpThreads,
    TrainerProgress Progress,
    NodeMetrics Metrics,
    IProgressSink Display,
    TimeSpan StepTimeout,
    CancellationToken RunCancelled);

/// <summary>Node → trainer: run one epoch (broadcasting rank 0's parameters first in epoch 1).</summary>
public sealed record RunEpoch(int Epoch);

/// <summary>Trainer → node.</summary>
public sealed record TrainerEpochDone(int LocalRank, int Epoch, long Steps, double LossSum, long LossCount, int SkippedSteps, double TestAccuracy);

/// <summary>Trainer → node: this replica's gradient held non-finite values at a step.</summary>
public sealed record TrainerNonFinite(int LocalRank, int GlobalRank, long Step, int Count);

/// <summary>Node → trainer: training is over; report the final state (rank 0 writes the model to OutDir).</summary>
public sealed record FinishTrainer(string OutDir);

public sealed record TrainerFinished(int LocalRank, TrainerSummary Summary, string? ModelPath, LossSample[] LossCurve);
