using ActorTrain.TrainerActors.Hosting;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Tests.Training;

/// <summary>
/// The trainer's warm-up runs a real step before the node registers and must leave no trace: a run with it trains
/// bitwise like a run without. The model has every kind of state a step touches: dropout (torch's random state),
/// BatchNorm (running statistics) and Adam (optimizer state created at its first step).
/// </summary>
[Collection(TorchRandomCollection.Name)]
public class WarmUpTests
{
    private sealed class StatefulJob : TrainingJob
    {
        public override string Name => "stateful";
        public override nn.Module<Tensor, Tensor> CreateModel() =>
            nn.Sequential(("flatten", nn.Flatten()), ("fc1", nn.Linear(784, 32)), ("bn", nn.BatchNorm1d(32)), ("relu", nn.ReLU()),
                ("drop", nn.Dropout(0.5)), ("fc2", nn.Linear(32, 10)));
        public override optim.Optimizer CreateOptimizer(nn.Module<Tensor, Tensor> model) => optim.Adam(model.parameters(), 0.01);
        public override IBatchSource LoadTrainingData() => SimulatedWorld.Data;
    }

    private static (string Checksum, byte[] Optimizer, string Initial) Train(bool warmUp)
    {
        using var replica = new Replica(new StatefulJob(), seed: 7, torch.CPU, bucketSizeBytes: 64 * 1024);
        var initial = replica.Checksum();
        torch.manual_seed(99);
        if (warmUp)
        {
            replica.WarmUp(SimulatedWorld.Data, batchSize: 16);
            Assert.Equal(initial, replica.Checksum());
            Assert.All(replica.Parameters, p => Assert.True(p.grad is null));
        }
        for (var step = 0; step < 3; step++)
        {
            var indices = Enumerable.Range(0, 16).Select(i => (step * 997 + i * 7) % 9000).ToArray();
            replica.GradientsToBuckets(replica.ForwardBackward(indices, SimulatedWorld.Data));
            Assert.True(replica.BucketsToGradients(worldSize: 1));
            replica.OptimizerStep();
        }
        return (replica.Checksum(), replica.SaveOptimizerState(), initial);
    }

    [Fact]
    public void A_run_after_the_warm_up_trains_bitwise_like_one_without()
    {
        var without = Train(warmUp: false);
        var with = Train(warmUp: true);
        // The steps change the model, so an equal checksum after them says something.
        Assert.NotEqual(without.Initial, without.Checksum);
        Assert.Equal(without.Checksum, with.Checksum);
        Assert.True(without.Optimizer.Length > 0);
        Assert.Equal(without.Optimizer, with.Optimizer);
    }

    [Fact]
    public void The_warm_up_puts_torchs_random_state_back()
    {
        using var replica = new Replica(new StatefulJob(), seed: 7, torch.CPU, bucketSizeBytes: 64 * 1024);
        torch.manual_seed(5);
        var expected = torch.rand(8).data<float>().ToArray();
        torch.manual_seed(5);
        replica.WarmUp(SimulatedWorld.Data, batchSize: 16);
        Assert.Equal(expected, torch.rand(8).data<float>().ToArray());
    }

    [Fact]
    public void Every_method_of_the_run_path_compiles_ahead()
    {
        var path = NodeWarmUp.NodePath.Concat(NodeWarmUp.CoordinatorPath).ToArray();
        var (compiled, failures) = NodeWarmUp.Compile(path);
        Assert.Empty(failures);
        // Every listed type contributes its methods, nested lambdas and state machines included.
        Assert.True(compiled > path.Length * 5, $"{compiled} methods compiled for {path.Length} types");
    }

    [Fact]
    public async Task A_training_nodes_background_warm_up_does_everything_and_leaves_no_folder_behind()
    {
        var outcome = await NodeWarmUp.Start(trains: true, compileAhead: false, hostsCoordinator: false).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Empty(outcome.Problems);
        Assert.Equal(0, outcome.CompiledAhead);
        Assert.Empty(Directory.EnumerateDirectories(Path.GetTempPath(), $"actortrain-warm-up-{Environment.ProcessId}-*"));
    }
}
