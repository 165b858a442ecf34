using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync.Tests;

public class ProcessGroupTests
{
    [Theory]
    [InlineData(3, 2, 10_007, 64)]
    [InlineData(3, 2, 5, 7)]
    [InlineData(2, 3, 4096, 1000)]
    [InlineData(1, 3, 999, 100)]
    [InlineData(4, 1, 999, 100)]
    public async Task Every_trainer_on_every_node_ends_with_the_global_sum(int nodes, int localSize, int length, int maxChunk)
    {
        var world = new World(nodes, localSize, maxChunk);
        var buffers = world.Inputs(length);
        var expected = TestData.ReferenceSum(buffers.SelectMany(b => b).ToArray(), length);

        var timings = new SyncTimings[nodes, localSize];
        await TestData.RunOnThreads(nodes * localSize, (trainer, ct) =>
        {
            var (node, local) = (trainer / localSize, trainer % localSize);
            timings[node, local] = world.Group(node, local).AllReduce(buffers[node][local], new CollectiveKey(9, 0), ct);
        });

        var first = buffers[0][0];
        TestData.AssertCloseToReference(expected, first, nodes * localSize);
        Assert.All(buffers.SelectMany(b => b), b => Assert.Equal(first, b));
        Assert.All(timings.Cast<SyncTimings>(), t => Assert.True(t.IntraNodeMs >= 0 && t.CrossNodeMs >= 0));
        world.Dispose();
    }

    [Fact]
    public async Task Without_a_cross_node_transport_only_the_node_is_reduced()
    {
        const int localSize = 3;
        using var intra = new SharedMemoryCollective(localSize);
        var buffers = Enumerable.Range(0, localSize).Select(r => TestData.RandomFloats(100, seed: r)).ToArray();
        var expected = TestData.ReferenceSum(buffers, 100);

        var timings = new SyncTimings[localSize];
        await TestData.RunOnThreads(localSize, (rank, ct) =>
            timings[rank] = new ProcessGroup(new GroupMember(rank, localSize, rank, 0, 1), intra, null, WireCompression.None, new GenerationScope(1, default))
                .AllReduce(buffers[rank], new CollectiveKey(1, 0), ct));

        TestData.AssertCloseToReference(expected, buffers[0], localSize);
        Assert.All(buffers, b => Assert.Equal(buffers[0], b));
        Assert.All(timings, t => Assert.Equal(0, t.CrossNodeMs));
    }

    [Theory]
    [InlineData(3, 2, 1001, 64)]
    [InlineData(3, 2, 5, 7)]
    [InlineData(1, 3, 333, 10)]
    public async Task A_broadcast_of_floats_from_every_root_copies_the_roots_bits(int nodes, int localSize, int length, int maxChunk)
    {
        var world = new World(nodes, localSize, maxChunk);
        for (int root = 0; root < nodes * localSize; root++)
        {
            var buffers = world.Inputs(length);
            // Bit patterns a sum would not keep: a signed zero and a NaN with a payload.
            var rootBuffer = buffers[root / localSize][root % localSize];
            rootBuffer[0] = -0f;
            rootBuffer[length - 1] = BitConverter.Int32BitsToSingle(0x7fc0_1234);
            var expected = rootBuffer.Select(BitConverter.SingleToInt32Bits).ToArray();
            int r = root;
            await world.OnEveryTrainer((group, trainer, ct) => group.Broadcast(buffers[trainer / localSize][trainer % localSize], r, new CollectiveKey(0, 0), ct));
            Assert.All(buffers.SelectMany(b => b), b => Assert.Equal(expected, b.Select(BitConverter.SingleToInt32Bits).ToArray()));
        }

        world.Dispose();
    }

    [Theory]
    [InlineData(3, 2, 1003, 16)]
    [InlineData(3, 2, 1, 16)]
    [InlineData(3, 2, 0, 16)]
    public async Task A_broadcast_of_bytes_from_every_root_copies_the_roots_bytes(int nodes, int localSize, int length, int maxChunk)
    {
        var world = new World(nodes, localSize, maxChunk);
        for (int root = 0; root < nodes * localSize; root++)
        {
            var bytes = Enumerable.Range(0, nodes * localSize).Select(rank => new byte[length]).ToArray();
            new Random(root).NextBytes(bytes[root]);
            var expected = bytes[root].ToArray();
            int r = root;
            await world.OnEveryTrainer((group, trainer, ct) => group.Broadcast(bytes[trainer].AsMemory(), r, new CollectiveKey(4, 1), ct));
            Assert.All(bytes, b => Assert.Equal(expected, b));
        }

        world.Dispose();
    }

    [Theory]
    [InlineData(3, 2, 1001, 64)]
    [InlineData(3, 2, 4, 3)]
    [InlineData(1, 2, 77, 8)]
    public async Task Reduce_scatter_then_all_gather_equals_the_all_reduce(int nodes, int localSize, int length, int maxChunk)
    {
        var world = new World(nodes, localSize, maxChunk);
        var viaHalves = world.Inputs(length);
        var viaAllReduce = world.Inputs(length);
        var shards = new (int Offset, int Count)[nodes * localSize];
        await world.OnEveryTrainer((group, trainer, ct) =>
        {
            var buffer = viaHalves[trainer / localSize][trainer % localSize];
            group.ReduceScatter(buffer, new CollectiveKey(3, 0), ct);
            shards[trainer] = group.ShardOf(length);
            group.AllGather(buffer, new CollectiveKey(3, 0), ct);
            group.AllReduce(viaAllReduce[trainer / localSize][trainer % localSize], new CollectiveKey(3, 1), ct);
        });

        Assert.All(viaHalves.SelectMany(b => b), b => Assert.Equal(viaAllReduce[0][0], b));
        // The shards tile the buffer: every element is owned by exactly one rank.
        Assert.Equal(Enumerable.Range(0, length), shards.OrderBy(s => s.Offset).SelectMany(s => Enumerable.Range(s.Offset, s.Count)));
        world.Dispose();
    }

    [Fact]
    public async Task A_barrier_holds_every_rank_until_the_last_arrives()
    {
        const int nodes = 3, localSize = 2;
        var world = new World(nodes, localSize, maxChunk: 16);
        using var lastMayGo = new ManualResetEventSlim();
        int passed = 0;
        var run = TestData.RunOnThreads(nodes * localSize, (trainer, ct) =>
        {
            if (trainer == (nodes * localSize) - 1)
            {
                lastMayGo.Wait(ct);
            }

            world.Group(trainer / localSize, trainer % localSize).Barrier(new CollectiveKey(0, 0), ct);
            Interlocked.Increment(ref passed);
        });

        await Task.Delay(300);
        Assert.Equal(0, Volatile.Read(ref passed));
        lastMayGo.Set();
        await run;
        Assert.Equal(nodes * localSize, passed);
        world.Dispose();
    }

    [Fact]
    public async Task Cancelling_the_generation_ends_a_collective_that_waits_for_a_missing_rank()
    {
        const int nodes = 3, localSize = 2;
        var world = new World(nodes, localSize, maxChunk: 16);
        using var generation = new CancellationTokenSource();
        var failures = new Exception?[nodes * localSize];
        // Every rank but the last one calls the all-reduce; the generation ends while they wait.
        var run = TestData.RunOnThreads((nodes * localSize) - 1, (trainer, ct) =>
        {
            try
            {
                world.Group(trainer / localSize, trainer % localSize, generation.Token).AllReduce(new float[100], new CollectiveKey(0, 0), ct);
            }
            catch (Exception e)
            {
                failures[trainer] = e;
            }
        });

        await Task.Delay(200);
        generation.Cancel();
        await run;
        Assert.All(failures.Take((nodes * localSize) - 1), e => Assert.IsAssignableFrom<OperationCanceledException>(e));
        Assert.Throws<OperationCanceledException>(() => world.Group(0, 0, generation.Token).Barrier(new CollectiveKey(1, 0)));
        world.Dispose();
    }

    [Fact]
    public void A_member_that_does_not_fit_the_world_is_refused_with_its_numbers()
    {
        using var intra = new SharedMemoryCollective(2);
        var e = Assert.Throws<ArgumentException>(() =>
            new ProcessGroup(new GroupMember(3, 4, 1, 0, 2), intra, InMemoryRingTransport.CreateRing(2, 8)[0], WireCompression.None, new GenerationScope(1, default)));
        Assert.Contains("rank = node index", e.Message);
    }

    /// <summary>Nodes with one intra-node collective each and one cross-node ring per local rank (lane).</summary>
    private sealed class World : IDisposable
    {
        private readonly IRingTransport[][] lanes;

        public World(int nodes, int localSize, int maxChunk)
        {
            Nodes = nodes;
            LocalSize = localSize;
            Intra = Enumerable.Range(0, nodes).Select(_ => new SharedMemoryCollective(localSize)).ToArray();
            lanes = Enumerable.Range(0, localSize).Select(_ => InMemoryRingTransport.CreateRing(nodes, maxChunk)).ToArray();
        }

        public int Nodes { get; }

        public int LocalSize { get; }

        public SharedMemoryCollective[] Intra { get; }

        /// <summary>Local rank <paramref name="local"/> of every node shares one ring; the node is its peer index.</summary>
        public IRingTransport Lane(int node, int local) => lanes[local][node];

        /// <summary>The process group of the trainer at local rank <paramref name="local"/> of node <paramref name="node"/>.</summary>
        public ProcessGroup Group(int node, int local, CancellationToken generationCancelled = default) =>
            new(new GroupMember((node * LocalSize) + local, Nodes * LocalSize, local, node, Nodes), Intra[node], Lane(node, local), WireCompression.None,
                new GenerationScope(1, generationCancelled));

        /// <summary>Runs <paramref name="body"/> for every trainer of the world, each on its own thread, with its process group.</summary>
        public Task OnEveryTrainer(Action<ProcessGroup, int, CancellationToken> body) =>
            TestData.RunOnThreads(Nodes * LocalSize, (trainer, ct) => body(Group(trainer / LocalSize, trainer % LocalSize), trainer, ct));

        public float[][][] Inputs(int length) =>
            Enumerable.Range(0, Nodes)
                .Select(node => Enumerable.Range(0, LocalSize)
                    .Select(local => TestData.RandomFloats(length, seed: (node * 100) + local))
                    .ToArray())
                .ToArray();

        public void Dispose()
        {
            foreach (var intra in Intra)
            {
                intra.Dispose();
            }
        }
    }
}
