using ActorTrain.Examples.Mnist;
using ActorTrain.Hosting;
using ActorTrain.TrainerActors.Jobs;
using TorchSharp;
using static TorchSharp.torch;

// Same subcommands as the MNIST example: seed | worker | local | status.
return ActorTrainHost.Run(args, new MlpJob(Path.Combine(AppContext.BaseDirectory, "data")));

/// <summary>A user's own job: a 784→128→10 perceptron on the shipped MNIST digits, trained with Adam.</summary>
sealed class MlpJob(string dataDir) : TrainingJob
{
    public override string Name => "mlp";
    public override string DefaultConfig => "actortrain.training.log-interval = 20";
    public override nn.Module<Tensor, Tensor> CreateModel() =>
        nn.Sequential(("fc1", nn.Linear(784, 128)), ("relu", nn.ReLU()), ("fc2", nn.Linear(128, 10)));
    public override optim.Optimizer CreateOptimizer(nn.Module<Tensor, Tensor> model) => optim.Adam(model.parameters(), lr: 1e-3);
    public override IBatchSource LoadTrainingData() => new Digits(MnistDataset.LoadFromDirectory(dataDir, train: true));
    public override IBatchSource? LoadTestData() => new Digits(MnistDataset.LoadFromDirectory(dataDir, train: false));
}

/// <summary>Mini-batches of flattened, normalised 28×28 digits and their labels.</summary>
sealed class Digits(MnistDataset data) : IBatchSource
{
    public int Count => data.Count;

    public (Tensor Input, Tensor Target) GetBatch(ReadOnlySpan<int> indices, Device device)
    {
        var images = new float[indices.Length * data.PixelsPerImage];
        var labels = new long[indices.Length];
        data.CopyBatch(indices, images, labels, MnistDataset.DefaultMean, MnistDataset.DefaultStd);
        return (tensor(images, [indices.Length, data.PixelsPerImage]).to(device), tensor(labels).to(device));
    }
}
