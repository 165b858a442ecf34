using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Tests.Training;

/// <summary>
/// BatchNorm's running statistics are buffers, not parameters: the gradient reduction never touches
/// them. With broadcast-buffers every replica takes rank 0's before each step (and once more at the
/// end), so the replicas end with the same model; without, each keeps the statistics of its own shard.
/// </summary>
[Collection(TorchRandomCollection.Name)]
public class ModuleBufferTests
{
    private const int PerRankBatch = 16;

    private static TrainingJob BatchNormJob() => new ModelJob("batchnorm", () =>
        nn.Sequential(("flatten", nn.Flatten()), ("fc1", nn.Linear(784, 32)), ("bn", nn.BatchNorm1d(32)), ("relu", nn.ReLU()), ("fc2", nn.Linear(32, 10))));

    private static (string Parameters, string Buffers)[] Train(bool broadcastBuffers)
    {
        using var world = new SimulatedWorld(nodes: 2, localSize: 1, job: BatchNormJob);
        return world.OnEachRank(rank =>
        {
            var r = world.Replicas[rank];
            var group = world.Group(rank);
            for (var step = 0; step < 3; step++)
            {
                if (broadcastBuffers) r.BroadcastModuleBuffers(group, step, CancellationToken.None);
                // Different data on each rank: different batch statistics.
                var indices = Enumerable.Range(0, PerRankBatch).Select(i => (step * 997 + rank * 4001 + i * 7) % 9000).ToArray();
                r.GradientsToBuckets(r.ForwardBackward(indices, SimulatedWorld.Data));
                world.Reduce(rank, step);
                Assert.True(r.BucketsToGradients(world.WorldSize));
                r.OptimizerStep();
            }
            if (broadcastBuffers) r.BroadcastModuleBuffers(group, 3, CancellationToken.None);
            return (r.Checksum(), r.ModuleBufferChecksum());
        });
    }

    [Fact]
    public void With_broadcast_buffers_the_replicas_end_with_equal_running_statistics()
    {
        var result = Train(broadcastBuffers: true);
        Assert.Equal(result[0].Buffers, result[1].Buffers);
        Assert.Equal(result[0].Parameters, result[1].Parameters);
    }

    [Fact]
    public void Without_it_each_replica_keeps_its_own_shards_statistics_and_the_checksum_shows_it()
    {
        var result = Train(broadcastBuffers: false);
        Assert.NotEqual(result[0].Buffers, result[1].Buffers);
        // The parameters are reduced all the same; the model checksum hashes the buffers beside them.
        Assert.NotEqual(result[0].Parameters, result[1].Parameters);
    }

    [Fact]
    public void The_broadcast_copies_every_buffer_of_rank_0_whatever_its_dtype()
    {
        using var world = new SimulatedWorld(nodes: 1, localSize: 2, job: BatchNormJob, seedOfRank: rank => 10 + rank);
        world.OnEachRank(rank =>
        {
            // Give rank 1 statistics (and an int64 batch count) of its own first.
            var r = world.Replicas[rank];
            for (var i = 0; i <= rank; i++) r.ForwardBackward(Enumerable.Range(rank * 100 + i, PerRankBatch).ToArray(), SimulatedWorld.Data);
        });
        var counts = world.Replicas.Select(r => r.Model.named_buffers().Single(b => b.name.EndsWith("num_batches_tracked")).buffer).ToArray();
        Assert.Equal(ScalarType.Int64, counts[1].dtype);
        Assert.Equal(2L, counts[1].item<long>());
        Assert.NotEqual(world.Replicas[0].ModuleBufferChecksum(), world.Replicas[1].ModuleBufferChecksum());
        world.OnEachRank(rank => world.Replicas[rank].BroadcastModuleBuffers(world.Group(rank), 0, CancellationToken.None));
        Assert.Equal(world.Replicas[0].ModuleBufferChecksum(), world.Replicas[1].ModuleBufferChecksum());
        Assert.Equal(1L, counts[1].item<long>());
    }
}
