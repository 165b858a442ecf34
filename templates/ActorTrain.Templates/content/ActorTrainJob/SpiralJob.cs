using ActorTrain.TrainerActors.Jobs;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrainJob;

/// <summary>
/// The training job: a small perceptron learns to tell three interleaved spirals apart, with SGD
/// and momentum. Replace the model, optimizer and data with your own; the framework shards the
/// data, averages the gradients across every replica and writes out/run-report.json.
/// </summary>
public sealed class SpiralJob : TrainingJob
{
    public override string Name => "spirals";

    /// <summary>job.conf beside the program: this job's HOCON defaults.</summary>
    public override string DefaultConfig => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "job.conf"));

    private int _hidden;
    private double _learningRate;

    /// <summary>The job's own settings (actortrain.job in job.conf), read once per node before anything else.</summary>
    public override void Configure(JobSettings settings)
    {
        _hidden = settings.GetInt("hidden", min: 1);
        _learningRate = settings.GetDouble("learning-rate");
    }

    public override nn.Module<Tensor, Tensor> CreateModel() => nn.Sequential(
        ("fc1", nn.Linear(2, _hidden)), ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(_hidden, _hidden)), ("relu2", nn.ReLU()),
        ("out", nn.Linear(_hidden, Spirals.Classes)));

    public override optim.Optimizer CreateOptimizer(nn.Module<Tensor, Tensor> model) =>
        optim.SGD(model.parameters(), learningRate: _learningRate, momentum: 0.9);

    // Every node makes the same points: the data depend on the seed alone, never on the rank.
    public override IBatchSource LoadTrainingData() => new Spirals(pointsPerClass: 1000, seed: 1);

    /// <summary>Evaluated by rank 0 after each epoch (the default metric: the fraction classified correctly).</summary>
    public override IBatchSource? LoadTestData() => new Spirals(pointsPerClass: 200, seed: 2);

    // Code every replica runs at fixed points of the step and the epoch: here gradient clipping before
    // each optimizer step and a learning rate that halves after epoch 3. Override Evaluate to report
    // metrics of your own instead of test_accuracy.
    public override IReadOnlyList<TrainingCallback> CreateCallbacks() =>
        [new ClipGradientNorm(maxNorm: 5.0), new EpochLearningRate(epoch => epoch <= 3 ? _learningRate : _learningRate / 2)];
}

/// <summary>Points on three noisy spiral arms in the plane, labelled by arm.</summary>
public sealed class Spirals : IBatchSource
{
    public const int Classes = 3;
    private readonly float[] _points;
    private readonly long[] _labels;

    public Spirals(int pointsPerClass, int seed)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pointsPerClass);
        var random = new Random(seed);
        Count = pointsPerClass * Classes;
        _points = new float[Count * 2];
        _labels = new long[Count];
        for (var i = 0; i < Count; i++)
        {
            var arm = i % Classes;
            var radius = (double)(i / Classes) / pointsPerClass;
            var angle = radius * 4.0 + arm * 2.0 * Math.PI / Classes + random.NextDouble() * 0.3;
            _points[2 * i] = (float)(radius * Math.Cos(angle));
            _points[2 * i + 1] = (float)(radius * Math.Sin(angle));
            _labels[i] = arm;
        }
    }

    public int Count { get; }

    public (Tensor Input, Tensor Target) GetBatch(ReadOnlySpan<int> indices, Device device)
    {
        var points = new float[indices.Length * 2];
        var labels = new long[indices.Length];
        for (var i = 0; i < indices.Length; i++)
        {
            points[2 * i] = _points[2 * indices[i]];
            points[2 * i + 1] = _points[2 * indices[i] + 1];
            labels[i] = _labels[indices[i]];
        }
        return (tensor(points, [indices.Length, 2]).to(device), tensor(labels).to(device));
    }
}
