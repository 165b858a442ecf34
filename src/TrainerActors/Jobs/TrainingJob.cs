using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Jobs;

/// <summary>
/// A data set a trainer draws mini-batches from. Indices come from the distributed sampler,
/// so a source never needs to know about ranks.
/// </summary>
public interface IBatchSource
{
    int Count { get; }

    /// <summary>Input and target tensors for the samples at <paramref name="indices"/>, on <paramref name="device"/>.</summary>
    (Tensor Input, Tensor Target) GetBatch(ReadOnlySpan<int> indices, Device device);
}

/// <summary>
/// What a user writes to train their own model with ActorTrain: the model, the optimizer, the
/// loss and the data. Everything distributed (ranks, shards, gradient averaging, checkpoints)
/// is the framework's. Every replica calls <see cref="CreateModel"/> after seeding torch with
/// the run's seed; rank 0's parameters are broadcast before the first step regardless.
/// </summary>
public abstract class TrainingJob
{
    /// <summary>Job id used when <c>actortrain.job-id</c> is empty.</summary>
    public abstract string Name { get; }

    /// <summary>HOCON placed under the user's config files: the job's own defaults (e.g. log-interval).</summary>
    public virtual string DefaultConfig => "";

    public abstract nn.Module<Tensor, Tensor> CreateModel();

    public abstract optim.Optimizer CreateOptimizer(nn.Module<Tensor, Tensor> model);

    public virtual Tensor ComputeLoss(Tensor output, Tensor target) => nn.functional.cross_entropy(output, target);

    public abstract IBatchSource LoadTrainingData();

    /// <summary>Held-out data evaluated by rank 0 after each epoch; null for none.</summary>
    public virtual IBatchSource? LoadTestData() => null;

    /// <summary>Fraction of <paramref name="data"/> classified correctly (argmax of the output). Override for other metrics.</summary>
    public virtual double Evaluate(nn.Module<Tensor, Tensor> model, IBatchSource data, Device device)
    {
        model.eval();
        try
        {
            using var noGrad = torch.no_grad();
            long correct = 0;
            const int batch = 500;
            var indices = new int[batch];
            for (var start = 0; start < data.Count; start += batch)
            {
                using var scope = torch.NewDisposeScope();
                var n = Math.Min(batch, data.Count - start);
                for (var i = 0; i < n; i++) indices[i] = start + i;
                var (input, target) = data.GetBatch(indices.AsSpan(0, n), device);
                var predicted = model.call(input).argmax(1);
                correct += predicted.eq(target).sum().item<long>();
            }
            return data.Count == 0 ? 0 : (double)correct / data.Count;
        }
        finally
        {
            model.train();
        }
    }
}
