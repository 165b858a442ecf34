using ActorTrain.Examples.Mnist;
using ActorTrain.Sync;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Collectives.Nccl;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Tests.Nccl;
using ActorTrain.Sync.Transport;
using ActorTrain.TrainerActors.Data;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Tests.Data;
using ActorTrain.TrainerActors.Torch;
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
    private readonly CountingDeviceMemory[]? _deviceMemory; // [rank], where the nodes reduce on the device

    public SimulatedWorld(int nodes, int localSize, long bucketSizeBytes = 256 * 1024, Func<int, int>? seedOfRank = null, int chunkElements = 4096,
        Func<TrainingJob>? job = null, bool reduceOnDevice = false)
    {
        // As a node does by default (actortrain.torch.mkldnn = off): libtorch's oneDNN convolution backward
        // returns NaN/inf gradients on some CPUs, now and then, which would fail these tests at random.
        if (!TorchRuntime.TrySetMkldnn(false, out var detail)) throw new InvalidOperationException(detail);
        Nodes = nodes;
        LocalSize = localSize;
        // On the device: NCCL's collective per node, through the fake libraries (each fake "device" is host memory,
        // so CPU tensors stand in for the trainers' device tensors).
        _intra = Enumerable.Range(0, nodes)
            .Select(node => reduceOnDevice
                ? NcclCollective.Create(FakeNccl.Nccl, FakeNccl.Cuda, Enumerable.Range(node * localSize, localSize).ToArray())
                : (IIntraNodeCollective)new SharedMemoryCollective(localSize))
            .ToArray();
        _deviceMemory = reduceOnDevice ? Enumerable.Range(0, nodes * localSize).Select(_ => new CountingDeviceMemory(FakeNccl.Cuda)).ToArray() : null;
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

    /// <summary>Rank <paramref name="rank"/>'s copies between device memory and the host (a world that reduces on the device).</summary>
    public CountingDeviceMemory DeviceMemory(int rank) => _deviceMemory?[rank] ?? throw new InvalidOperationException("this world reduces in host memory");

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
    public void Reduce(int rank, long step, WireCompression compression = WireCompression.None)
    {
        var group = Group(rank, compression);
        var buffers = Replicas[rank].Buffers;
        for (var b = 0; b < buffers.Length; b++) group.AllReduce(buffers[b], new CollectiveKey(step, b));
    }

    /// <summary>Rank <paramref name="rank"/>'s process group of generation 1: the same collectives as <see cref="Reduce"/>.</summary>
    public ProcessGroup Group(int rank, WireCompression compression = WireCompression.None, CancellationToken generationCancelled = default)
    {
        var (node, local) = (rank / LocalSize, rank % LocalSize);
        return new ProcessGroup(new GroupMember(rank, WorldSize, local, node, Nodes), _intra[node], Nodes > 1 ? _lanes[local][node] : null, compression,
            new GenerationScope(1, generationCancelled))
        {
            Device = _deviceMemory is null ? null : new DeviceCollectives((IDeviceIntraNodeCollective)_intra[node], _deviceMemory[rank]),
        };
    }

    /// <summary>Every replica takes rank 0's parameters.</summary>
    public void Broadcast(int rank) => BroadcastState(rank, source: 0, optimizerStateBytes: 0);

    /// <summary>Every replica takes <paramref name="source"/>'s parameters and optimizer state.</summary>
    public void BroadcastState(int rank, int source, int optimizerStateBytes) =>
        Replicas[rank].BroadcastState(Group(rank), source, optimizerStateBytes, step: 0, CancellationToken.None);

    public void Dispose()
    {
        foreach (var r in Replicas) r.Dispose();
        foreach (var i in _intra) i.Dispose();
    }
}

/// <summary>A job of the example's data with a model of the test's own and plain SGD.</summary>
internal sealed class ModelJob(string name, Func<TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>> model) : TrainingJob
{
    private readonly MnistJob _inner = new(DataTestSupport.MnistDataDirectory);
    public override string Name => name;
    public override TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> CreateModel() => model();
    public override TorchSharp.torch.optim.Optimizer CreateOptimizer(TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> m) =>
        TorchSharp.torch.optim.SGD(m.parameters(), 0.05);
    public override IBatchSource LoadTrainingData() => _inner.LoadTrainingData();
}
