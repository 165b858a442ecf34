using System.Globalization;
using ActorTrain.TrainerActors.Jobs;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.Examples.TinyLM;

/// <summary>
/// A byte-level transformer language model trained on Debian's fortunes: next-byte cross-entropy,
/// AdamW with a linear warm-up and gradient clipping, and the held-out loss in nats and in bits per
/// byte (<c>val_loss</c>, <c>val_bpc</c>) after each epoch.
/// </summary>
public sealed class TinyLmJob(FortuneCorpus corpus) : TrainingJob
{
    public const double PeakLearningRate = 1e-3;
    public const int WarmupSteps = 10;
    public const double MaxGradientNorm = 1.0;

    /// <summary>Windows of the training text in one epoch, spread over all of it (other bytes each epoch).</summary>
    public const int DefaultSamplesPerEpoch = 512;

    /// <summary>Held-out windows rank 0 evaluates after each epoch, spread over the held-out text.</summary>
    public const int HeldOutWindows = 128;

    /// <summary>The job's setting for the windows per epoch (<see cref="DefaultSamplesPerEpoch"/> unless set): <c>actortrain.job.samples-per-epoch</c>.</summary>
    public const string SamplesPerEpochKey = "samples-per-epoch";

    private static int _described;
    private readonly EpochClock _clock = new();
    private int _samplesPerEpoch = DefaultSamplesPerEpoch;

    public TransformerShape Shape { get; } = TransformerShape.Default;

    public override string Name => "tinylm";

    // 8 windows of 64 bytes per trainer and step: 512 windows make 32 steps per epoch on 2 nodes.
    // The gradient (22.7 MB) spans about six buckets of 4 MiB, so the reduction of the later layers' buckets
    // can start during backward when overlap-backward is on.
    public override string DefaultConfig => $"""
        actortrain.training.batch-size = 8
        actortrain.training.epochs = 10
        actortrain.training.log-interval = 8
        # Measured best on two hosts joined by 1 Gbit/s (docs/PERFORMANCE.md, "TinyLM on shaped links"):
        # buckets reduced while backward runs, bf16 on the wire; 42.6 samples/s against 33.2 without.
        actortrain.sync.overlap-backward = on
        actortrain.sync.compression = bf16
        actortrain.job.samples-per-epoch = {DefaultSamplesPerEpoch}
        """;

    public override void Configure(JobSettings settings) => _samplesPerEpoch = settings.GetInt(SamplesPerEpochKey, min: 1);

    public override nn.Module<Tensor, Tensor> CreateModel()
    {
        var model = new Transformer(Shape);
        // Every trainer builds a replica: describe it once per process.
        if (Interlocked.Exchange(ref _described, 1) == 0)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"tinylm: {model.ParameterCount:N0} parameters ({model.ParameterCount * sizeof(float) / 1e6:0.0} MB float32 gradient), " +
                $"{Shape.Layers} layers × {Shape.Width} wide, {Shape.Heads} heads, context {Shape.Context} bytes; " +
                $"{corpus.Training.Length:N0} training and {corpus.HeldOut.Length:N0} held-out bytes, {_samplesPerEpoch:N0} windows per epoch"));
        return model;
    }

    public override optim.Optimizer CreateOptimizer(nn.Module<Tensor, Tensor> model) =>
        optim.AdamW(model.parameters(), lr: PeakLearningRate, beta1: 0.9, beta2: 0.95, weight_decay: 0.01);

    public override IReadOnlyList<TrainingCallback> CreateCallbacks() =>
        [_clock, new LinearWarmup(PeakLearningRate, WarmupSteps), new ClipGradientNorm(MaxGradientNorm)];

    /// <summary>Next-byte cross-entropy over every position of every window, in nats.</summary>
    public override Tensor ComputeLoss(Tensor output, Tensor target) =>
        nn.functional.cross_entropy(output.reshape(-1, output.shape[^1]), target.reshape(-1));

    public override IBatchSource LoadTrainingData() => new TextWindows(corpus.Training, Shape.Context, _samplesPerEpoch, _clock);

    public override IBatchSource? LoadTestData() => TextWindows.Tiling(corpus.HeldOut, Shape.Context, HeldOutWindows);

    public const string LossMetric = "val_loss";
    public const string BitsPerByteMetric = "val_bpc";

    public override IReadOnlyDictionary<string, double> Evaluate(nn.Module<Tensor, Tensor> model, IBatchSource data, TrainingContext context)
    {
        double nats = 0;
        long predictions = 0;
        foreach (var (input, target) in EvaluationBatches(data, context.Device, batchSize: 32))
        {
            var output = model.call(input);
            nats += nn.functional.cross_entropy(output.reshape(-1, output.shape[^1]), target.reshape(-1), reduction: nn.Reduction.Sum).item<float>();
            predictions += target.numel();
        }
        var loss = predictions == 0 ? double.NaN : nats / predictions;
        return new Dictionary<string, double> { [LossMetric] = loss, [BitsPerByteMetric] = loss / Math.Log(2) };
    }

    /// <summary>The corpus beside the program (data/fortunes.txt.gz), or the file ACTORTRAIN_TINYLM_CORPUS names.</summary>
    public static string DefaultCorpusFile() =>
        Environment.GetEnvironmentVariable("ACTORTRAIN_TINYLM_CORPUS") is { Length: > 0 } file ? file : Path.Combine(AppContext.BaseDirectory, "data", "fortunes.txt.gz");
}

/// <summary>
/// Raises the learning rate linearly from 0 to <paramref name="peak"/> over the first
/// <paramref name="steps"/> optimizer steps of the run, then holds it. It depends on the global
/// step alone, so every replica, a joining one too, sets the same rate.
/// </summary>
public sealed class LinearWarmup(double peak, int steps) : TrainingCallback
{
    public override void BeforeOptimizerStep(TrainingContext context, nn.Module<Tensor, Tensor> model, optim.Optimizer optimizer)
    {
        var rate = peak * Math.Min(1.0, (context.GlobalStep + 1) / (double)steps);
        foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;
    }
}
