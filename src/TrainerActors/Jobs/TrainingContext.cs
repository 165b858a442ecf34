using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Jobs;

/// <summary>
/// Where a replica stands, as a job's code sees it: its place in the current generation's world
/// and its position in the run. A new generation (a node joined or was lost) can change the rank
/// and the world size between two steps; the run's position carries on.
/// </summary>
/// <param name="Rank">This replica's rank in the generation's world, 0..WorldSize-1.</param>
/// <param name="WorldSize">Number of replicas in the generation.</param>
/// <param name="LocalRank">This replica's index among the trainers of its node.</param>
/// <param name="Device">The device its model lives on.</param>
/// <param name="Generation">The world's generation, starting at 1.</param>
/// <param name="Epoch">The epoch being trained, starting at 1.</param>
/// <param name="GlobalStep">Optimizer steps taken in the whole run before this one.</param>
public sealed record TrainingContext(int Rank, int WorldSize, int LocalRank, Device Device, long Generation, int Epoch, long GlobalStep)
{
    /// <summary>True on the replica that evaluates, writes the model and prints the loss lines.</summary>
    public bool IsRankZero => Rank == 0;
}
