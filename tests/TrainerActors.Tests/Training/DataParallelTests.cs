using ActorTrain.TrainerActors.Training;
using TorchSharp;

namespace ActorTrain.TrainerActors.Tests.Training;

/// <summary>The arithmetic that makes data parallelism correct, on real MNIST digits and the real collectives.</summary>
[Collection(TorchRandomCollection.Name)]
public class DataParallelTests
{
    private const int PerRankBatch = 16;

    [Theory]
    [InlineData(1, 4)]
    [InlineData(2, 2)]
    [InlineData(4, 1)]
    public void One_step_on_N_trainers_equals_one_trainer_on_the_union_batch(int nodes, int localSize)
    {
        using var world = new SimulatedWorld(nodes, localSize);
        using var single = new SimulatedWorld(1, 1);
        var n = world.WorldSize;
        var union = Enumerable.Range(0, n * PerRankBatch).Select(i => (i * 37) % 9000).ToArray();

        world.OnEachRank(rank =>
        {
            var r = world.Replicas[rank];
            var loss = r.ForwardBackward(union.AsSpan(rank * PerRankBatch, PerRankBatch), SimulatedWorld.Data);
            Assert.Equal(0, r.GradientsToBuckets(loss));
            world.Reduce(rank, step: 0);
            Assert.True(r.BucketsToGradients(n));
            r.OptimizerStep();
        });
        single.OnEachRank(_ =>
        {
            var r = single.Replicas[0];
            r.GradientsToBuckets(r.ForwardBackward(union, SimulatedWorld.Data));
            single.Reduce(0, step: 0);
            Assert.True(r.BucketsToGradients(1));
            r.OptimizerStep();
        });

        var expected = Parameters(single.Replicas[0]);
        var moved = Parameters(single.Replicas[0]).Zip(Parameters(new SimulatedWorld(1, 1).Replicas[0]), (a, b) => Math.Abs(a - b)).Max();
        Assert.True(moved > 1e-4, "the reference step should change the parameters");
        foreach (var replica in world.Replicas)
        {
            var actual = Parameters(replica);
            var worst = actual.Zip(expected, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst < 2e-6, $"largest difference from the union-batch step is {worst}");
        }
    }

    [Fact]
    public void Replicas_stay_bitwise_equal_over_several_steps_on_different_shards()
    {
        using var world = new SimulatedWorld(nodes: 2, localSize: 2, bucketSizeBytes: 128 * 1024);
        var checksums = world.OnEachRank(rank =>
        {
            var r = world.Replicas[rank];
            for (var step = 0; step < 4; step++)
            {
                var indices = Enumerable.Range(0, PerRankBatch).Select(i => (step * 997 + rank * 131 + i * 7) % 9000).ToArray();
                r.GradientsToBuckets(r.ForwardBackward(indices, SimulatedWorld.Data));
                world.Reduce(rank, step);
                Assert.True(r.BucketsToGradients(world.WorldSize));
                r.OptimizerStep();
            }
            return r.Checksum();
        });
        Assert.Single(checksums.Distinct());
        Assert.True(world.Replicas[0].Layout.Buckets.Count > 1, "the test should exercise several buckets");
    }

    [Fact]
    public void Broadcast_gives_every_replica_rank_0s_parameters()
    {
        using var world = new SimulatedWorld(nodes: 2, localSize: 2, seedOfRank: rank => 100 + rank);
        var before = world.Replicas.Select(r => r.Checksum()).ToArray();
        Assert.Equal(4, before.Distinct().Count());
        world.OnEachRank(world.Broadcast);
        Assert.All(world.Replicas, r => Assert.Equal(before[0], r.Checksum()));
    }

    [Fact]
    public void A_non_finite_gradient_on_one_rank_skips_the_step_on_every_replica()
    {
        using var world = new SimulatedWorld(nodes: 2, localSize: 2);
        var before = world.Replicas[0].Checksum();
        var applied = world.OnEachRank(rank =>
        {
            var r = world.Replicas[rank];
            var loss = r.ForwardBackward(Enumerable.Range(rank * PerRankBatch, PerRankBatch).ToArray(), SimulatedWorld.Data);
            if (rank == 3)
            {
                using var noGrad = torch.no_grad();
                r.Model.parameters().First().grad!.fill_(float.NaN);
            }
            var nonFinite = r.GradientsToBuckets(loss);
            Assert.Equal(rank == 3 ? 20 * 1 * 5 * 5 : 0, nonFinite);
            world.Reduce(rank, step: 0);
            Assert.Equal(1, r.ReducedNonFiniteReplicas);
            var ok = r.BucketsToGradients(world.WorldSize);
            if (ok) r.OptimizerStep();
            return ok;
        });
        Assert.All(applied, Assert.False);
        Assert.All(world.Replicas, r => Assert.Equal(before, r.Checksum()));
    }

    [Fact]
    public void The_reduced_loss_is_the_mean_over_replicas()
    {
        using var world = new SimulatedWorld(nodes: 2, localSize: 1);
        var losses = world.OnEachRank(rank =>
        {
            var r = world.Replicas[rank];
            var loss = r.ForwardBackward(Enumerable.Range(rank * 500, PerRankBatch).ToArray(), SimulatedWorld.Data);
            r.GradientsToBuckets(loss);
            world.Reduce(rank, 0);
            var beforeAveraging = r.ReducedMeanLoss(world.WorldSize);
            Assert.True(r.BucketsToGradients(world.WorldSize));
            return (Local: loss, Mean: beforeAveraging, AfterAveraging: r.ReducedMeanLoss(world.WorldSize));
        });
        var expected = losses.Average(l => l.Local);
        Assert.All(losses, l => Assert.Equal(expected, l.Mean, 5));
        Assert.All(losses, l => Assert.Equal(expected, l.AfterAveraging, 5));
    }

    [Fact]
    public void A_replica_is_reproducible_from_its_seed()
    {
        using var world = new SimulatedWorld(nodes: 1, localSize: 3, seedOfRank: rank => rank == 2 ? 8 : 7);
        Assert.Equal(world.Replicas[0].Checksum(), world.Replicas[1].Checksum());
        Assert.NotEqual(world.Replicas[0].Checksum(), world.Replicas[2].Checksum());
        Assert.Equal(world.Replicas[0].Fingerprint, world.Replicas[2].Fingerprint);
    }

    private static float[] Parameters(Replica replica) =>
        replica.Model.parameters().SelectMany(p => p.data<float>().ToArray()).ToArray();
}
