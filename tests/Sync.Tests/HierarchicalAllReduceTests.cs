using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync.Tests;

public class HierarchicalAllReduceTests
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
            timings[node, local] = HierarchicalAllReduce.Run(
                world.Intra[node], local, world.Lane(node, local), buffers[node][local], generation: 1, step: 9, bucket: 0, ct);
        });

        var first = buffers[0][0];
        TestData.AssertCloseToReference(expected, first, nodes * localSize);
        Assert.All(buffers.SelectMany(b => b), b => Assert.Equal(first, b));
        Assert.All(timings.Cast<SyncTimings>(), t => Assert.True(t.IntraNodeMs >= 0 && t.CrossNodeMs >= 0));
        world.Dispose();
    }

    [Fact]
    public async Task The_async_form_gives_the_same_result()
    {
        const int nodes = 3, localSize = 2, length = 3001;
        var world = new World(nodes, localSize, maxChunk: 100);
        var buffers = world.Inputs(length);
        var expected = TestData.ReferenceSum(buffers.SelectMany(b => b).ToArray(), length);

        // The all-gather after the ring blocks the thread it resumes on; give it dedicated threads'
        // worth of pool capacity instead of relying on thread injection.
        ThreadPool.GetMinThreads(out int workers, out int io);
        ThreadPool.SetMinThreads(Math.Max(workers, (nodes * localSize) + 4), io);

        using var cts = new CancellationTokenSource(TestData.Timeout);
        var runs = Enumerable.Range(0, nodes * localSize).Select(trainer => Task.Run(() =>
        {
            var (node, local) = (trainer / localSize, trainer % localSize);
            return HierarchicalAllReduce.RunAsync(
                world.Intra[node], local, world.Lane(node, local), buffers[node][local], 1, 9, 0, cts.Token);
        }));
        var timings = await Task.WhenAll(runs).WaitAsync(TestData.Timeout);

        TestData.AssertCloseToReference(expected, buffers[0][0], nodes * localSize);
        Assert.All(buffers.SelectMany(b => b), b => Assert.Equal(buffers[0][0], b));
        Assert.All(timings, t => Assert.True(t.CrossNodeMs > 0));
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
            timings[rank] = HierarchicalAllReduce.Run(intra, rank, crossNode: null, buffers[rank], 1, 1, 0, ct));

        TestData.AssertCloseToReference(expected, buffers[0], localSize);
        Assert.All(buffers, b => Assert.Equal(buffers[0], b));
        Assert.All(timings, t => Assert.Equal(0, t.CrossNodeMs));
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
