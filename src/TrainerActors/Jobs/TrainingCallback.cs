using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Jobs;

/// <summary>
/// Code a job runs at fixed points of every replica's step and epoch: learning-rate schedules,
/// gradient clipping, its own bookkeeping. Every replica calls the same callbacks at the same
/// points with the same averaged gradients, so whatever a callback does to the model or the
/// optimizer keeps the replicas equal, as long as it depends only on what it is given.
/// A callback's own state does not travel with checkpoints or to replicas of later
/// generations: derive it from <see cref="TrainingContext.GlobalStep"/> and
/// <see cref="TrainingContext.Epoch"/> (as a scheduler should) rather than counting calls.
/// </summary>
public abstract class TrainingCallback
{
    /// <summary>Before the epoch's first step on this replica (also when a generation resumes inside it).</summary>
    public virtual void OnEpochBegin(TrainingContext context, optim.Optimizer optimizer)
    {
    }

    /// <summary>
    /// After the gradients have been averaged over every replica and before the optimizer steps:
    /// the place for gradient clipping. Not called for a step whose update is skipped because a
    /// replica's gradient was not finite.
    /// </summary>
    public virtual void BeforeOptimizerStep(TrainingContext context, nn.Module<Tensor, Tensor> model, optim.Optimizer optimizer)
    {
    }

    /// <summary>After the step, with the step's loss averaged over every replica (NaN when it was not finite).</summary>
    public virtual void OnStepEnd(TrainingContext context, optim.Optimizer optimizer, double meanLoss)
    {
    }

    /// <summary>After the epoch's last step, with its mean loss and, on rank 0, the job's evaluation metrics (else empty).</summary>
    public virtual void OnEpochEnd(TrainingContext context, double meanLoss, IReadOnlyDictionary<string, double> metrics)
    {
    }
}

/// <summary>Scales every gradient so that their joint L2 norm is at most <see cref="MaxNorm"/>, before each optimizer step.</summary>
public sealed class ClipGradientNorm(double maxNorm) : TrainingCallback
{
    public double MaxNorm { get; } = maxNorm > 0 && double.IsFinite(maxNorm)
        ? maxNorm
        : throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "the largest gradient norm must be a positive number");

    public override void BeforeOptimizerStep(TrainingContext context, nn.Module<Tensor, Tensor> model, optim.Optimizer optimizer) =>
        nn.utils.clip_grad_norm_(model.parameters(), MaxNorm);
}

/// <summary>
/// Sets the learning rate of every parameter group from the epoch before each epoch (a step
/// schedule, cosine, warm-up). The rate depends on the epoch only, so a replica that joins later
/// or resumes from a checkpoint gets the same rate as the others.
/// </summary>
public sealed class EpochLearningRate(Func<int, double> rateForEpoch) : TrainingCallback
{
    public override void OnEpochBegin(TrainingContext context, optim.Optimizer optimizer)
    {
        var rate = rateForEpoch(context.Epoch);
        if (!double.IsFinite(rate) || rate < 0)
            throw new InvalidOperationException($"the learning-rate schedule gave {rate} for epoch {context.Epoch}; it must be a finite number ≥ 0");
        foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;
    }
}
