namespace ActorTrain.Sync;

/// <summary>Wall time one trainer spent in the two halves of a hierarchical all-reduce.</summary>
/// <param name="IntraNodeMs">Reduce-scatter plus all-gather among the node's trainers.</param>
/// <param name="CrossNodeMs">The cross-node ring on this trainer's slice (0 on a single node).</param>
internal readonly record struct SyncTimings(double IntraNodeMs, double CrossNodeMs);
