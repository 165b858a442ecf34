using ActorTrain.Examples.Mnist;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Transport;
using ActorTrain.TrainerActors.Data;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Tests.Data;
using ActorTrain.TrainerActors.Training;
using TorchSharp;

namespace ActorTrain.TrainerActors.Tests.Training;

/// <summary>
/// nodes × localSize MNIST replicas in one process, reduced through the real Sync collectives:
/// a shared-memory collective per node and one in-memory cross-node ring per lane. Each replica
/// runs on its own thread, as trainer actors do on their pinned dispatcher.
/// </summary>
internal sealed class SimulatedWorld : IDisposable
{
    private static readonly Lazy<MnistBatches> Train = new(() =>
        new MnistBatches(MnistDataset.LoadFromDirectory(DataTestSupport.MnistDataDirectory, train: true)));

    private readonly IIntraNodeCollective[] _intra;
    private readonly IRingTransport[][] _lanes; // [lane][node]

    public SimulatedWorld(int nodes, int localSize, long bucketSizeBytes = 256 * 1024, Func<int, int>? seedOfRank = null, int chunkElements = 4096,
        Func<TrainingJob>? job = null)
    {
        Nodes = nodes;
        LocalSize = localSize;
        _intra = Enumerable.Range(0, nodes).Select(_ => (IIntraNodeCollective)new SharedMemoryCollective(localSize)).ToArray();
        _lanes = Enumerable.Range(0, localSize).Select(_ => InMemoryRingTransport.CreateRing(nodes, chunkElements)).ToArray();
        Replicas = Enumerable.Range(0, WorldSize)
            .Select(rank => new Replica(job?.Invoke() ?? new MnistJob(DataTestSupport.MnistDataDirectory), seedOfRank?.Invoke(rank) ?? 7, torch.CPU, bucketSizeBytes))
            .ToArray();
    }

    public int Nodes { get; }
    public int LocalSize { get; }
    public int WorldSize => Nodes * LocalSize;
    public Replica[] Replicas { get; }
    public static IBatchSource Data => Train.Value;

    /// <summary>Runs <paramref name="action"/> for every global rank, each on its own thread, and waits (bounded).</summary>
    public T[] OnEachRank<T>(Func<int, T> action)
    {
        var results = new T[WorldSize];
        Exception? failure = null;
        var threads = Enumerable.Range(0, WorldSize).Select(rank => new Thread(() =>
        {
            try { results[rank] = action(rank); }
            catch (Exception e) { Interlocked.CompareExchange(ref failure, e, null); }
        })).ToList();
        foreach (var t in threads) t.Start();
        foreach (var t in threads)
            if (!t.Join(TimeSpan.FromSeconds(120))) throw new TimeoutException("a simulated trainer did not finish within 120 s");
        if (failure is not null) throw new AggregateException(failure);
        return results;
    }

    public void OnEachRank(Action<int> action) => OnEachRank(rank => { action(rank); return 0; });

    /// <summary>The full data-parallel sync for one rank: buckets reduced across the world.</summary>
    public void Reduce(int rank, long step, WireCompression compression = WireCompression.None) =>
        Replicas[rank].ReduceBuckets(Target(rank, compression), step, CancellationToken.None);

    /// <summary>Where rank <paramref name="rank"/>'s buckets go: the same collectives as <see cref="Reduce"/>.</summary>
    public ReductionTarget Target(int rank, WireCompression compression = WireCompression.None)
    {
        var (node, local) = (rank / LocalSize, rank % LocalSize);
        return new ReductionTarget(_intra[node], local, Nodes > 1 ? _lanes[local][node] : null, Generation: 1, compression);
    }

    public void Broadcast(int rank)
    {
        var (node, local) = (rank / LocalSize, rank % LocalSize);
        Replicas[rank].BroadcastParameters(rank == 0, _intra[node], local, Nodes > 1 ? _lanes[local][node] : null, generation: 1, CancellationToken.None);
    }

    /// <summary>Every replica takes <paramref name="source"/>'s parameters and optimizer state.</summary>
    public void BroadcastState(int rank, int source, int optimizerStateBytes)
    {
        var (node, local) = (rank / LocalSize, rank % LocalSize);
        Replicas[rank].BroadcastState(rank == source, optimizerStateBytes, _intra[node], local, Nodes > 1 ? _lanes[local][node] : null, generation: 1,
            CancellationToken.None);
    }

    public void Dispose()
    {
        foreach (var r in Replicas) r.Dispose();
        foreach (var i in _intra) i.Dispose();
    }
}
