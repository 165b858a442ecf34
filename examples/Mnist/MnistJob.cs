using System.Runtime.InteropServices;
using ActorTrain.TrainerActors.Jobs;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace ActorTrain.Examples.Mnist;

/// <summary>The classic DDP tutorial's CNN for MNIST digits.</summary>
public sealed class MnistNet : Module<Tensor, Tensor>
{
    private readonly Module<Tensor, Tensor> conv1 = Conv2d(1, 20, 5);
    private readonly Module<Tensor, Tensor> conv2 = Conv2d(20, 50, 5);
    private readonly Module<Tensor, Tensor> fc1 = Linear(800, 500);
    private readonly Module<Tensor, Tensor> fc2 = Linear(500, 10);

    public MnistNet() : base(nameof(MnistNet)) => RegisterComponents();

    public override Tensor forward(Tensor x)
    {
        x = functional.max_pool2d(functional.relu(conv1.call(x)), 2);
        x = functional.max_pool2d(functional.relu(conv2.call(x)), 2);
        x = x.flatten(1);
        x = functional.relu(fc1.call(x));
        return fc2.call(x);
    }
}

/// <summary>
/// The example's training job: the CNN, SGD with lr 0.01, cross-entropy, and MNIST digits read
/// from IDX files (the 9,000/1,000 digits shipped in data/, or a folder with the full MNIST set).
/// </summary>
public sealed class MnistJob(string dataDirectory) : TrainingJob
{
    public const float LearningRate = 0.01f;

    public override string Name => "mnist";

    // 9,000 digits over 2 nodes at batch 64 give 70 steps per epoch: print every 20.
    // The gradient (1.7 MB) goes in the one bucket of the 4 MiB default: without overlap the buckets
    // are reduced one after another, each paying the ring's latency (docs/PERFORMANCE.md, "Shared
    // memory between nodes on one host").
    public override string DefaultConfig => """
        actortrain.training.log-interval = 20
        """;

    public override Module<Tensor, Tensor> CreateModel() => new MnistNet();

    public override optim.Optimizer CreateOptimizer(Module<Tensor, Tensor> model) => optim.SGD(model.parameters(), LearningRate);

    public override IBatchSource LoadTrainingData() => new MnistBatches(MnistDataset.LoadFromDirectory(dataDirectory, train: true));

    public override IBatchSource? LoadTestData() => new MnistBatches(MnistDataset.LoadFromDirectory(dataDirectory, train: false));

    /// <summary>Where the shipped digits are: beside the program, or ACTORTRAIN_MNIST_DATA.</summary>
    public static string DefaultDataDirectory() =>
        Environment.GetEnvironmentVariable("ACTORTRAIN_MNIST_DATA") is { Length: > 0 } dir ? dir : Path.Combine(AppContext.BaseDirectory, "data");
}

/// <summary>Mini-batches of normalised digits (NCHW, one channel) and their labels.</summary>
public sealed class MnistBatches(MnistDataset data) : IBatchSource
{
    public int Count => data.Count;

    public (Tensor Input, Tensor Target) GetBatch(ReadOnlySpan<int> indices, Device device)
    {
        // Straight into tensors libtorch allocates: a managed array per batch (200 KB at batch 64) would be
        // a large-object-heap allocation every step, and each few MB of those costs a gen2 collection.
        var input = torch.empty([indices.Length, 1, data.Rows, data.Columns], ScalarType.Float32);
        var target = torch.empty([indices.Length], ScalarType.Int64);
        data.CopyBatch(indices, MemoryMarshal.Cast<byte, float>(input.bytes), MemoryMarshal.Cast<byte, long>(target.bytes),
            MnistDataset.DefaultMean, MnistDataset.DefaultStd);
        return device.type == DeviceType.CPU ? (input, target) : (input.to(device), target.to(device));
    }
}
