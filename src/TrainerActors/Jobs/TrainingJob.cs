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

    /// <summary>
    /// Called once per node process, before anything else of the job, with its own settings
    /// (<c>actortrain.job</c>): read what the job needs here (hyperparameters, the size of its data).
    /// A <see cref="Cluster.Settings.SettingsException"/> from it is reported as a usage error naming the key.
    /// </summary>
    public virtual void Configure(JobSettings settings) { }

    public abstract nn.Module<Tensor, Tensor> CreateModel();

    public abstract optim.Optimizer CreateOptimizer(nn.Module<Tensor, Tensor> model);

    public virtual Tensor ComputeLoss(Tensor output, Tensor target) => nn.functional.cross_entropy(output, target);

    public abstract IBatchSource LoadTrainingData();

    /// <summary>Held-out data evaluated by rank 0 after each epoch; null for none.</summary>
    public virtual IBatchSource? LoadTestData() => null;

    /// <summary>
    /// Code every replica runs at fixed points of its steps and epochs (learning-rate schedules,
    /// gradient clipping, the job's own bookkeeping); called once per replica, after the model and
    /// the optimizer exist. See <see cref="TrainingCallback"/>.
    /// </summary>
    public virtual IReadOnlyList<TrainingCallback> CreateCallbacks() => [];

    /// <summary>The name the default <see cref="Evaluate"/> gives its metric in the report, the plots and the log.</summary>
    public const string AccuracyMetric = "test_accuracy";

    /// <summary>
    /// The job's metrics on the held-out data, by name; rank 0 calls it after each epoch with the
    /// model in eval mode and gradients off. The names appear in run-report.json (top level for the
    /// last epoch, and per epoch), in a plot each, and in the epoch's log line. The default is the
    /// fraction classified correctly (argmax of the output), named <see cref="AccuracyMetric"/>;
    /// override it for other metrics (a regression's mean squared error, say).
    /// With <c>actortrain.training.warm-up</c> on, every trainer also calls it once before its node registers, on the
    /// first <see cref="EvaluationBatchSize"/> held-out samples with <see cref="TrainingContext.Epoch"/> 0, and drops
    /// the result: so that the first epoch's evaluation does not pay for first calls.
    /// </summary>
    public virtual IReadOnlyDictionary<string, double> Evaluate(nn.Module<Tensor, Tensor> model, IBatchSource data, TrainingContext context)
    {
        long correct = 0;
        foreach (var (input, target) in EvaluationBatches(data, context.Device))
        {
            var predicted = model.call(input).argmax(1);
            correct += predicted.eq(target).sum().item<long>();
        }
        return new Dictionary<string, double> { [AccuracyMetric] = data.Count == 0 ? 0 : (double)correct / data.Count };
    }

    /// <summary>Samples per batch in <see cref="EvaluationBatches"/> unless the job asks for another size.</summary>
    public const int EvaluationBatchSize = 500;

    /// <summary>
    /// <paramref name="data"/> in order, in batches of <paramref name="batchSize"/>, for an
    /// <see cref="Evaluate"/> of a job's own. Each batch's tensors (and whatever the caller computes
    /// from them before asking for the next) are disposed when the next batch is made.
    /// </summary>
    protected static IEnumerable<(Tensor Input, Tensor Target)> EvaluationBatches(IBatchSource data, Device device, int batchSize = EvaluationBatchSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var indices = new int[batchSize];
        for (var start = 0; start < data.Count; start += batchSize)
        {
            using var scope = torch.NewDisposeScope();
            var n = Math.Min(batchSize, data.Count - start);
            for (var i = 0; i < n; i++) indices[i] = start + i;
            yield return data.GetBatch(indices.AsSpan(0, n), device);
        }
    }
}

/// <summary>The first <paramref name="count"/> samples of <paramref name="source"/> (all of them when it holds fewer).</summary>
internal sealed class FirstSamples(IBatchSource source, int count) : IBatchSource
{
    public int Count { get; } = Math.Min(count, source.Count);

    public (Tensor Input, Tensor Target) GetBatch(ReadOnlySpan<int> indices, Device device)
    {
        foreach (var i in indices)
            if ((uint)i >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), i, $"must be below {Count}");
        return source.GetBatch(indices, device);
    }
}
