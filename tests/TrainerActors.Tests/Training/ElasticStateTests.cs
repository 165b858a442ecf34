using ActorTrain.Examples.Mnist;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Tests.Data;
using ActorTrain.TrainerActors.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Tests.Training;

/// <summary>What a new generation relies on: the pause vote inside the reduction, and a replica taking another's whole state.</summary>
[Collection(TorchRandomCollection.Name)]
public class ElasticStateTests
{
    /// <summary>The example's model and data with SGD momentum, so the optimizer holds real state.</summary>
    private sealed class MomentumJob : TrainingJob
    {
        private readonly MnistJob _inner = new(DataTestSupport.MnistDataDirectory);
        public override string Name => "momentum";
        public override nn.Module<Tensor, Tensor> CreateModel() => _inner.CreateModel();
        public override optim.Optimizer CreateOptimizer(nn.Module<Tensor, Tensor> model) => optim.SGD(model.parameters(), 0.01, momentum: 0.9);
        public override IBatchSource LoadTrainingData() => _inner.LoadTrainingData();
    }

    private static readonly int[] Batch = Enumerable.Range(0, 16).Select(i => i * 53 % 9000).ToArray();

    /// <summary>One step on this replica alone (no reduction): what a replica that got ahead did.</summary>
    private static void LocalStep(Replica r, int offset)
    {
        r.ForwardBackward(Batch.Select(i => (i + offset) % 9000).ToArray(), SimulatedWorld.Data);
        r.OptimizerStep();
    }

    [Theory]
    [InlineData(-1, false)]
    [InlineData(0, true)]
    [InlineData(3, true)]
    public void One_replica_voting_to_pause_stops_every_replica_after_the_same_step(int voter, bool expected)
    {
        using var world = new SimulatedWorld(nodes: 2, localSize: 2);
        var seen = world.OnEachRank(rank =>
        {
            var r = world.Replicas[rank];
            r.GradientsToBuckets(r.ForwardBackward(Batch, SimulatedWorld.Data));
            r.VoteToPause(rank == voter);
            world.Reduce(rank, step: 0);
            Assert.True(r.BucketsToGradients(world.WorldSize), "a pause vote must not skip the step");
            return r.PauseVoted;
        });

        Assert.All(seen, s => Assert.Equal(expected, s));
    }

    [Fact]
    public void A_replica_that_takes_the_sources_state_then_trains_exactly_like_it()
    {
        using var world = new SimulatedWorld(nodes: 2, localSize: 1, job: () => new MomentumJob());
        var (source, joiner) = (world.Replicas[0], world.Replicas[1]);
        // The source trained on; the other is fresh, like a node joining mid-run.
        for (var step = 0; step < 3; step++) LocalStep(source, step);
        Assert.NotEqual(source.Checksum(), joiner.Checksum());
        var stateBytes = source.SaveOptimizerState().Length;
        Assert.True(stateBytes > 1000, $"momentum buffers should make the optimizer state large, it is {stateBytes} bytes");

        world.OnEachRank(rank => world.BroadcastState(rank, source: 0, stateBytes));

        Assert.Equal(source.Checksum(), joiner.Checksum());
        Assert.Equal(source.SaveOptimizerState(), joiner.SaveOptimizerState());
        // With the momentum buffers carried over, the next steps stay bitwise equal.
        for (var step = 3; step < 5; step++)
        {
            LocalStep(source, step);
            LocalStep(joiner, step);
        }
        Assert.Equal(source.Checksum(), joiner.Checksum());
    }

    [Fact]
    public void Without_the_optimizer_state_the_replicas_would_drift_apart()
    {
        using var world = new SimulatedWorld(nodes: 2, localSize: 1, job: () => new MomentumJob());
        var (source, joiner) = (world.Replicas[0], world.Replicas[1]);
        for (var step = 0; step < 3; step++) LocalStep(source, step);

        world.OnEachRank(rank => world.BroadcastState(rank, source: 0, optimizerStateBytes: 0));
        Assert.Equal(source.Checksum(), joiner.Checksum());
        LocalStep(source, 3);
        LocalStep(joiner, 3);

        Assert.NotEqual(source.Checksum(), joiner.Checksum());
    }
}
