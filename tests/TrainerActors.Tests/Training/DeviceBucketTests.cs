using ActorTrain.Sync;
using ActorTrain.Sync.Tests.Nccl;
using ActorTrain.TrainerActors.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Tests.Training;

/// <summary>
/// A process group that reduces on the device (NCCL inside the node, here the fake libraries) makes the
/// replica keep its buckets in device memory: the gradients never pass through the host arrays, only
/// each trainer's shard of the node's sum crosses to the host for the ring, and training ends where
/// host buckets take it.
/// </summary>
[Collection(TorchRandomCollection.Name)]
public class DeviceBucketTests
{
    private const int Steps = 3;
    private const long BucketBytes = 64 * 1024;

    private static int[] Indices(int step, int rank) => Enumerable.Range(0, 16).Select(i => (step * 997 + rank * 131 + i * 7) % 9000).ToArray();

    /// <summary>Runs <see cref="Steps"/> steps on every rank through the reducer; returns each rank's checksum and reduced mean losses.</summary>
    private static (string Checksum, float[] Losses)[] Train(SimulatedWorld world, Action<int, int, Replica>? afterBackward = null) =>
        world.OnEachRank(rank =>
        {
            var r = world.Replicas[rank];
            using var reducer = new GradientReducer(r);
            var losses = new float[Steps];
            for (var step = 0; step < Steps; step++)
            {
                var pass = reducer.Begin(new ReductionStep(world.Group(rank), step), CancellationToken.None);
                var loss = pass.Run(true, () => r.ForwardBackward(Indices(step, rank), SimulatedWorld.Data));
                afterBackward?.Invoke(rank, step, r);
                pass.Finish(loss, voteToPause: false);
                pass.Wait();
                losses[step] = r.ReducedMeanLoss(world.WorldSize);
                if (r.BucketsToGradients(world.WorldSize)) r.OptimizerStep();
            }
            return (r.Checksum(), losses);
        });

    [FakeNcclFact]
    public void Device_buckets_train_to_the_same_bytes_as_host_buckets_and_only_each_trainers_shard_crosses_to_the_host()
    {
        using var host = new SimulatedWorld(2, 2, BucketBytes);
        using var device = new SimulatedWorld(2, 2, BucketBytes, reduceOnDevice: true);
        Assert.True(device.Replicas[0].Layout.Buckets.Count >= 3, "the test needs several buckets");

        var expected = Train(host);
        var results = Train(device);

        for (var rank = 0; rank < device.WorldSize; rank++)
        {
            var r = device.Replicas[rank];
            Assert.True(r.BucketsOnDevice);
            // Two addends per sum inside the node and two around the ring: the order cannot change the bits.
            Assert.Equal(expected[rank].Checksum, results[rank].Checksum);
            Assert.Equal(expected[rank].Losses, results[rank].Losses);

            // Per step and bucket, this trainer's slice of the node's sum went to the host and back, nothing more.
            var shard = r.Layout.Buckets.Sum(b => (long)Partition.Slice(b.Length, device.LocalSize, rank % device.LocalSize).Count) * sizeof(float);
            Assert.Equal(Steps * shard, device.DeviceMemory(rank).DeviceToHostBytes);
            Assert.Equal(Steps * shard, device.DeviceMemory(rank).HostToDeviceBytes);
            Assert.True(shard * device.LocalSize <= r.Layout.Buckets.Sum(b => (long)b.Length * sizeof(float)) + (device.LocalSize * r.Layout.Buckets.Count * sizeof(float)));

            // The host arrays carried the counters only: every gradient element there is still zero.
            var extra = r.Layout.ExtraOffset;
            for (var b = 0; b < r.Buffers.Length; b++)
            {
                var gradients = b == extra.Bucket ? r.Buffers[b].AsSpan(0, extra.Offset) : r.Buffers[b];
                Assert.True(gradients.IndexOfAnyExcept(0f) < 0, $"rank {rank}: bucket {b}'s gradients went through host memory");
            }
        }
    }

    [FakeNcclFact]
    public void A_non_finite_gradient_in_a_device_bucket_skips_the_step_on_every_replica()
    {
        // Rank 3's gradient holds a NaN at step 1: no replica may apply that step.
        Action<int, int, Replica> poison = (rank, step, r) =>
        {
            if (rank != 3 || step != 1) return;
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            r.Parameters[0].grad!.view(-1)[0] = torch.tensor(float.NaN);
        };
        using var device = new SimulatedWorld(2, 2, BucketBytes, reduceOnDevice: true);
        using var host = new SimulatedWorld(2, 2, BucketBytes);
        using var clean = new SimulatedWorld(2, 2, BucketBytes, reduceOnDevice: true);
        var poisoned = Train(device, poison);
        var onHost = Train(host, poison);
        var unpoisoned = Train(clean);

        for (var rank = 0; rank < device.WorldSize; rank++)
        {
            Assert.Equal(poisoned[0].Checksum, poisoned[rank].Checksum);
            Assert.Equal(onHost[rank].Checksum, poisoned[rank].Checksum);
            Assert.NotEqual(unpoisoned[rank].Checksum, poisoned[rank].Checksum);
            Assert.True(float.IsFinite(poisoned[rank].Losses[1]), "the other replicas' losses still average");
        }
    }

    [FakeNcclFact]
    public void A_reducer_that_overlaps_backward_refuses_a_group_that_reduces_on_the_device()
    {
        using var device = new SimulatedWorld(1, 1, BucketBytes, reduceOnDevice: true);
        using var reducer = new GradientReducer(device.Replicas[0], "test-reducer");
        var e = Assert.Throws<NotSupportedException>(() => reducer.Begin(new ReductionStep(device.Group(0), 0), CancellationToken.None));
        Assert.Contains("after backward", e.Message);
    }
}
