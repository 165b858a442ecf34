namespace ActorTrain.TrainerActors.Reporting;

/// <summary>One logged training loss: the mean over all replicas at global step <see cref="Step"/>.</summary>
internal readonly record struct LossPoint(long Step, double Loss);

/// <summary>
/// One finished epoch: the global step it ended at, its mean training loss and the job's
/// evaluation metrics by name (empty when it was not measured).
/// </summary>
internal readonly record struct EpochPoint(int Epoch, long EndStep, double MeanLoss, IReadOnlyDictionary<string, double> Metrics);
