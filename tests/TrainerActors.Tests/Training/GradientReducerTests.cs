using ActorTrain.Examples.Mnist;
using ActorTrain.Sync;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Compression;
using ActorTrain.TrainerActors.Data;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Tests.Data;
using ActorTrain.TrainerActors.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Tests.Training;

/// <summary>
/// Reducing buckets while backward runs must reduce exactly the bytes that the reduction after
/// backward does, and must really start before backward ends.
/// </summary>
[Collection(TorchRandomCollection.Name)]
public class GradientReducerTests
{
    private const int PerRankBatch = 16;

    /// <summary>
    /// A model with what the overlap must get right beyond a chain of layers: a module called twice
    /// (complete only after both calls' backward), a residual branch, and a parameter of the root
    /// module itself (used in forward outside any hooked module, so it waits for the end).
    /// </summary>
    private sealed class BranchyNet : nn.Module<Tensor, Tensor>
    {
        private readonly TorchSharp.Modules.Linear input = nn.Linear(784, 64);
        private readonly TorchSharp.Modules.Linear shared = nn.Linear(64, 64);
        private readonly TorchSharp.Modules.Linear head = nn.Linear(64, 10);
        private readonly TorchSharp.Modules.Parameter scale = nn.Parameter(torch.ones(64));

        public BranchyNet() : base(nameof(BranchyNet)) => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            var h = nn.functional.relu(input.call(x.flatten(1)));
            var g = nn.functional.relu(shared.call(h));
            g = nn.functional.relu(shared.call(g)) + h;
            return head.call(g * scale);
        }
    }

    private sealed class BranchyJob : TrainingJob
    {
        private readonly MnistJob _inner = new(DataTestSupport.MnistDataDirectory);
        public override string Name => "branchy";
        public override nn.Module<Tensor, Tensor> CreateModel() => new BranchyNet();
        public override optim.Optimizer CreateOptimizer(nn.Module<Tensor, Tensor> model) => optim.SGD(model.parameters(), 0.05, momentum: 0.9);
        public override IBatchSource LoadTrainingData() => _inner.LoadTrainingData();
    }

    private static int[] Indices(int step, int rank, int microBatch = 0) =>
        Enumerable.Range(0, PerRankBatch).Select(i => (step * 997 + rank * 131 + microBatch * 389 + i * 7) % 9000).ToArray();

    [Theory]
    [InlineData("mnist", 2, 1, 1)]
    [InlineData("mnist", 2, 2, 1)]
    [InlineData("mnist", 2, 1, 3)]
    [InlineData("branchy", 2, 2, 1)]
    public void Overlapped_steps_reduce_the_same_bytes_as_steps_reduced_after_backward(string model, int nodes, int localSize, int microBatches)
    {
        Func<TrainingJob> job = model == "mnist" ? () => new MnistJob(DataTestSupport.MnistDataDirectory) : () => new BranchyJob();
        // Small buckets, so that the model spans several and some can start during backward.
        using var after = new SimulatedWorld(nodes, localSize, bucketSizeBytes: 16 * 1024, job: job);
        using var overlapped = new SimulatedWorld(nodes, localSize, bucketSizeBytes: 16 * 1024, job: job);
        Assert.True(after.Replicas[0].Layout.Buckets.Count >= 3, "the test needs several buckets");

        var reference = after.OnEachRank(rank =>
        {
            var r = after.Replicas[rank];
            var reduced = new List<float[]>();
            for (var step = 0; step < 3; step++)
            {
                var loss = 0f;
                for (var m = 0; m < microBatches; m++)
                    loss += r.ForwardBackward(Indices(step, rank, m), SimulatedWorld.Data, m, microBatches) / microBatches;
                r.GradientsToBuckets(loss);
                after.Reduce(rank, step);
                reduced.Add(r.Buffers.SelectMany(b => b).ToArray());
                Assert.True(r.BucketsToGradients(after.WorldSize));
                r.OptimizerStep();
            }
            return (Reduced: reduced, Checksum: r.Checksum());
        });

        var early = new int[overlapped.WorldSize];
        var results = overlapped.OnEachRank(rank =>
        {
            var r = overlapped.Replicas[rank];
            using var overlap = new GradientReducer(r, $"test-reducer-{rank}");
            var reduced = new List<float[]>();
            for (var step = 0; step < 3; step++)
            {
                var pass = overlap.Begin(new ReductionStep(overlapped.Group(rank), step), CancellationToken.None);
                var loss = 0f;
                for (var m = 0; m < microBatches; m++)
                {
                    var microBatch = m;
                    loss += pass.Run(m == microBatches - 1, () => r.ForwardBackward(Indices(step, rank, microBatch), SimulatedWorld.Data, microBatch, microBatches)) / microBatches;
                }
                Assert.Equal(0, pass.Finish(loss, voteToPause: false));
                pass.Wait();
                early[rank] += pass.StartedDuringBackward;
                reduced.Add(r.Buffers.SelectMany(b => b).ToArray());
                Assert.True(r.BucketsToGradients(overlapped.WorldSize));
                r.OptimizerStep();
            }
            return (Reduced: reduced, Checksum: r.Checksum());
        });

        for (var rank = 0; rank < overlapped.WorldSize; rank++)
        {
            for (var step = 0; step < 3; step++)
                Assert.True(reference[rank].Reduced[step].AsSpan().SequenceEqual(results[rank].Reduced[step]),
                    $"rank {rank}, step {step}: the overlapped reduction differs from the one after backward");
            Assert.Equal(reference[rank].Checksum, results[rank].Checksum);
            Assert.True(early[rank] > 0, $"rank {rank}: no bucket started before backward returned");
        }
    }

    [Fact]
    public void Without_overlap_the_same_reducer_reduces_every_bucket_after_backward_on_the_callers_thread()
    {
        using var world = new SimulatedWorld(2, 1, bucketSizeBytes: 16 * 1024);
        using var reference = new SimulatedWorld(2, 1, bucketSizeBytes: 16 * 1024);
        var expected = reference.OnEachRank(rank =>
        {
            var r = reference.Replicas[rank];
            r.GradientsToBuckets(r.ForwardBackward(Indices(0, rank), SimulatedWorld.Data));
            reference.Reduce(rank, 0);
            return r.Buffers.SelectMany(b => b).ToArray();
        });
        var results = world.OnEachRank(rank =>
        {
            var r = world.Replicas[rank];
            using var reducer = new GradientReducer(r);
            Assert.False(reducer.Overlaps);
            Assert.Equal(0, reducer.HookedModules);
            var caller = Environment.CurrentManagedThreadId;
            var started = new List<int>();
            var pass = reducer.Begin(new ReductionStep(world.Group(rank), 0, b =>
            {
                Assert.Equal(caller, Environment.CurrentManagedThreadId);
                started.Add(b);
            }), CancellationToken.None);
            var loss = pass.Run(true, () => r.ForwardBackward(Indices(0, rank), SimulatedWorld.Data));
            pass.Finish(loss, voteToPause: false);
            Assert.Empty(started);
            pass.Wait();
            Assert.Equal(0, pass.StartedDuringBackward);
            Assert.Equal(Enumerable.Range(0, r.Buffers.Length), started);
            return r.Buffers.SelectMany(b => b).ToArray();
        });
        for (var rank = 0; rank < 2; rank++)
            Assert.True(expected[rank].AsSpan().SequenceEqual(results[rank]), $"rank {rank}: the reducer's bytes differ from the plain all-reduce's");
    }

    [Fact]
    public void The_example_model_has_its_four_layers_hooked_and_buckets_that_can_start_early()
    {
        using var world = new SimulatedWorld(1, 1, bucketSizeBytes: 1024 * 1024);
        using var overlap = new GradientReducer(world.Replicas[0], "test-reducer");
        Assert.Equal(4, overlap.HookedModules);
        // fc2 and fc1 (reverse order) fill the buckets before the one with conv1, which waits for the end.
        Assert.InRange(overlap.EarlyBuckets, 1, world.Replicas[0].Layout.Buckets.Count - 1);
    }

    [Fact]
    public void Changing_the_bucket_size_rebuilds_the_overlap_for_the_new_layout()
    {
        using var world = new SimulatedWorld(1, 1, bucketSizeBytes: 1024 * 1024);
        var r = world.Replicas[0];
        using var reducer = new GradientReducer(r, "test-reducer");
        var first = reducer.Layout;
        r.UseBucketSize(16 * 1024);
        var pass = reducer.Begin(new ReductionStep(world.Group(0), 0), CancellationToken.None);
        Assert.NotSame(first, reducer.Layout);
        var loss = pass.Run(true, () => r.ForwardBackward(Indices(0, 0), SimulatedWorld.Data));
        pass.Finish(loss, voteToPause: false);
        pass.Wait();
        Assert.True(pass.StartedDuringBackward > 1, $"{pass.StartedDuringBackward} bucket(s) started during backward");
    }

    /// <summary>An intra-node collective whose reduce-scatter fails, like a peer that vanished.</summary>
    private sealed class FailingCollective(IIntraNodeCollective inner) : IIntraNodeCollective
    {
        public string Name => "failing";
        public int LocalSize => inner.LocalSize;
        public int Calls;
        public void ReduceScatter(int localRank, Memory<float> buffer, CancellationToken cancellationToken)
        {
            if (Interlocked.Increment(ref Calls) == 1) throw new IOException("the peer went away");
            inner.ReduceScatter(localRank, buffer, cancellationToken);
        }
        public void AllGather(int localRank, Memory<float> buffer, CancellationToken cancellationToken) => inner.AllGather(localRank, buffer, cancellationToken);
        public void AllReduce(int localRank, Memory<float> buffer, CancellationToken cancellationToken) => inner.AllReduce(localRank, buffer, cancellationToken);
        public void Broadcast(int localRank, int rootLocalRank, Memory<float> buffer, CancellationToken cancellationToken) =>
            inner.Broadcast(localRank, rootLocalRank, buffer, cancellationToken);
        public void Dispose() => inner.Dispose();
    }

    [Fact]
    public void A_failed_bucket_is_rethrown_by_Wait_the_rest_are_not_reduced_and_the_next_step_runs()
    {
        using var world = new SimulatedWorld(1, 1, bucketSizeBytes: 16 * 1024);
        var r = world.Replicas[0];
        using var overlap = new GradientReducer(r, "test-reducer");
        using var failing = new FailingCollective(new SharedMemoryCollective(1));
        var failingGroup = new ProcessGroup(new GroupMember(0, 1, 0, 0, 1), failing, null, WireCompression.None, new GenerationScope(1, CancellationToken.None));
        var pass = overlap.Begin(new ReductionStep(failingGroup, 0), CancellationToken.None);
        var loss = pass.Run(true, () => r.ForwardBackward(Indices(0, 0), SimulatedWorld.Data));
        pass.Finish(loss, voteToPause: false);
        var e = Assert.Throws<IOException>(() => pass.Wait());
        Assert.Equal("the peer went away", e.Message);
        Assert.Equal(1, failing.Calls);

        // The next step on a working collective: a one-rank world's sum is the gradient itself.
        pass = overlap.Begin(new ReductionStep(world.Group(0), 1), CancellationToken.None);
        loss = pass.Run(true, () => r.ForwardBackward(Indices(1, 0), SimulatedWorld.Data));
        pass.Finish(loss, voteToPause: false);
        pass.Wait();
        var reduced = r.Buffers.SelectMany(b => b).ToArray();
        r.GradientsToBuckets(loss);
        Assert.Equal(r.Buffers.SelectMany(b => b).ToArray(), reduced);
    }

    [Fact]
    public void A_cancelled_step_ends_with_OperationCanceledException_and_the_replica_stays_usable()
    {
        using var world = new SimulatedWorld(1, 1, bucketSizeBytes: 16 * 1024);
        var r = world.Replicas[0];
        using var overlap = new GradientReducer(r, "test-reducer");
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var pass = overlap.Begin(new ReductionStep(world.Group(0), 0), cancelled.Token);
        pass.Finish(pass.Run(true, () => r.ForwardBackward(Indices(0, 0), SimulatedWorld.Data)), voteToPause: false);
        Assert.ThrowsAny<OperationCanceledException>(() => pass.Wait());

        pass = overlap.Begin(new ReductionStep(world.Group(0), 1), CancellationToken.None);
        pass.Finish(pass.Run(true, () => r.ForwardBackward(Indices(1, 0), SimulatedWorld.Data)), voteToPause: true);
        pass.Wait();
        Assert.True(r.PauseVoted);
        Assert.True(r.BucketsToGradients(1));
    }

    [Fact]
    public void A_step_cannot_begin_before_the_previous_one_has_been_waited_for()
    {
        using var world = new SimulatedWorld(1, 1);
        var r = world.Replicas[0];
        using var overlap = new GradientReducer(r, "test-reducer");
        var pass = overlap.Begin(new ReductionStep(world.Group(0), 0), CancellationToken.None);
        Assert.Throws<InvalidOperationException>(() => overlap.Begin(new ReductionStep(world.Group(0), 1), CancellationToken.None));
        pass.Finish(pass.Run(true, () => r.ForwardBackward(Indices(0, 0), SimulatedWorld.Data)), voteToPause: false);
        // Finished but not waited for: its reductions may still be using the buckets.
        Assert.Throws<InvalidOperationException>(() => overlap.Begin(new ReductionStep(world.Group(0), 1), CancellationToken.None));
        pass.Wait();
        overlap.Begin(new ReductionStep(world.Group(0), 1), CancellationToken.None);
    }
}
