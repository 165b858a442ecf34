using ActorTrain.Cluster.Protocol;

namespace ActorTrain.TrainerActors.Checkpoints;

/// <summary>
/// What a checkpoint holds of the run besides the trainer's own state: the coordinator's history,
/// the world size and the seed. Immutable; the trainer builds it from the messages it was sent
/// (its world and the node's <see cref="HistoryUpdate"/>s), so a save on the trainer's thread never
/// reads the node actor's state.
/// </summary>
internal sealed record CheckpointRun(RunHistory History, int WorldSize, int Seed);
