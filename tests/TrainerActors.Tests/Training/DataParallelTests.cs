using ActorTrain.Sync.Compression;
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

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void K_accumulated_micro_batches_equal_one_batch_k_times_larger(int k)
    {
        using var accumulated = new SimulatedWorld(1, 1);
        using var whole = new SimulatedWorld(1, 1);
        var batch = Enumerable.Range(0, k * PerRankBatch).Select(i => (i * 53) % 9000).ToArray();

        var losses = new float[2];
        accumulated.OnEachRank(_ =>
        {
            var r = accumulated.Replicas[0];
            for (var m = 0; m < k; m++) losses[0] += r.ForwardBackward(batch.AsSpan(m * PerRankBatch, PerRankBatch), SimulatedWorld.Data, m, k) / k;
            r.GradientsToBuckets(losses[0]);
            accumulated.Reduce(0, step: 0);
            Assert.True(r.BucketsToGradients(1));
            r.OptimizerStep();
        });
        whole.OnEachRank(_ =>
        {
            var r = whole.Replicas[0];
            losses[1] = r.ForwardBackward(batch, SimulatedWorld.Data);
            r.GradientsToBuckets(losses[1]);
            whole.Reduce(0, step: 0);
            Assert.True(r.BucketsToGradients(1));
            r.OptimizerStep();
        });

        Assert.Equal(losses[1], losses[0], 5);
        var expected = Parameters(whole.Replicas[0]);
        var moved = expected.Zip(Parameters(new SimulatedWorld(1, 1).Replicas[0]), (a, b) => Math.Abs(a - b)).Max();
        Assert.True(moved > 1e-4, "the reference step should change the parameters");
        var worst = Parameters(accumulated.Replicas[0]).Zip(expected, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst < 1e-5, $"largest difference from the k x batch step is {worst}");
    }

    [Fact]
    public void Without_accumulation_each_step_starts_from_cleared_gradients_and_with_it_they_add_up()
    {
        using var world = new SimulatedWorld(1, 1);
        var r = world.Replicas[0];
        var indices = Enumerable.Range(0, PerRankBatch).ToArray();
        float[] Gradient() => r.Model.parameters().First().grad!.data<float>().ToArray();
        world.OnEachRank(_ =>
        {
            r.ForwardBackward(indices, SimulatedWorld.Data);
            var once = Gradient();
            r.ForwardBackward(indices, SimulatedWorld.Data);
            Assert.Equal(once, Gradient());
            r.ForwardBackward(indices, SimulatedWorld.Data, 0, 2);
            r.ForwardBackward(indices, SimulatedWorld.Data, 1, 2);
            var worst = Gradient().Zip(once, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst < 1e-6, $"two halves of the same batch should add up to its gradient; off by {worst}");
        });
        Assert.Throws<ArgumentOutOfRangeException>(() => r.ForwardBackward(indices, SimulatedWorld.Data, 2, 2));
    }

    [Theory]
    [InlineData(WireCompression.Fp16)]
    [InlineData(WireCompression.Bf16)]
    public void Compressed_replicas_stay_bitwise_equal_and_close_to_float32_training(WireCompression compression)
    {
        float[] Train(SimulatedWorld world, WireCompression c, out string[] checksums)
        {
            checksums = world.OnEachRank(rank =>
            {
                var r = world.Replicas[rank];
                for (var step = 0; step < 3; step++)
                {
                    var indices = Enumerable.Range(0, PerRankBatch).Select(i => (step * 997 + rank * 131 + i * 7) % 9000).ToArray();
                    r.GradientsToBuckets(r.ForwardBackward(indices, SimulatedWorld.Data));
                    world.Reduce(rank, step, c);
                    Assert.True(r.BucketsToGradients(world.WorldSize));
                    r.OptimizerStep();
                }
                return r.Checksum();
            });
            return Parameters(world.Replicas[0]);
        }

        using var compressed = new SimulatedWorld(nodes: 2, localSize: 2, bucketSizeBytes: 128 * 1024);
        using var plain = new SimulatedWorld(nodes: 2, localSize: 2, bucketSizeBytes: 128 * 1024);
        var withCompression = Train(compressed, compression, out var compressedChecksums);
        var reference = Train(plain, WireCompression.None, out var plainChecksums);

        Assert.Single(compressedChecksums.Distinct());
        Assert.Single(plainChecksums.Distinct());
        Assert.NotEqual(plainChecksums[0], compressedChecksums[0]); // the wire format really changed the sums
        // Three SGD steps of lr 0.01 on gradients rounded to 8 (bf16) or 11 (fp16) bits move each
        // parameter by at most a few 1e-4 from the float32 run.
        var worst = withCompression.Zip(reference, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst < 1e-3, $"largest difference from float32 training is {worst}");
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
