namespace ActorTrain.TrainerActors.Tests;

/// <summary>
/// Test classes that seed or draw from libtorch's process-wide random generator (building
/// replicas included). Run one at a time: a draw in one class between another's
/// <c>manual_seed</c> and its model's initialization would change that model.
/// </summary>
[CollectionDefinition(Name)]
public sealed class TorchRandomCollection
{
    public const string Name = "torch-random";
}
