using System.Collections.Concurrent;
using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Collectives.Nccl;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync.Tests.Nccl;

/// <summary>
/// NcclCollective through the real bindings against a CPU stand-in for NCCL and the CUDA runtime
/// (see <see cref="FakeNccl"/>): checks the function signatures, the by-value unique id, one thread
/// per rank and the padded staging layout for slices of unequal length, with the shared-memory
/// collective as the reference.
/// </summary>
public class NcclCollectiveFakeTests
{
    public enum Op
    {
        AllReduce,
        ReduceScatter,
        AllGather,
        Broadcast,
    }

    private static float[][] Contributions(int ranks, int length) =>
        Enumerable.Range(0, ranks).Select(r => Enumerable.Range(0, length).Select(i => (r + 1) * 1000f + i).ToArray()).ToArray();

    private static void OnEveryRank(int ranks, Action<int> body)
    {
        var errors = new ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, ranks).Select(r => new Thread(() =>
        {
            try
            {
                body(r);
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        Assert.All(threads, t => Assert.True(t.Join(TimeSpan.FromSeconds(30)), "a rank did not finish"));
        if (!errors.IsEmpty)
        {
            throw new AggregateException(errors);
        }
    }

    private static float[][] RunHost(IIntraNodeCollective collective, Op op, int length)
    {
        var buffers = Contributions(collective.LocalSize, length);
        OnEveryRank(collective.LocalSize, r =>
        {
            switch (op)
            {
                case Op.AllReduce: collective.AllReduce(r, buffers[r], CancellationToken.None); break;
                case Op.ReduceScatter: collective.ReduceScatter(r, buffers[r], CancellationToken.None); break;
                case Op.AllGather: collective.AllGather(r, buffers[r], CancellationToken.None); break;
                default: ((NcclCollective)collective).Broadcast(r, 1, buffers[r], CancellationToken.None); break;
            }
        });
        return buffers;
    }

    private static float[][] RunDevice(NcclCollective collective, CudaRuntime cuda, Op op, int length)
    {
        var buffers = Contributions(collective.LocalSize, length);
        OnEveryRank(collective.LocalSize, r =>
        {
            cuda.SetDevice(collective.DeviceOf(r));
            var pointer = cuda.Malloc((long)length * sizeof(float));
            try
            {
                cuda.CopyToDevice(buffers[r], pointer);
                switch (op)
                {
                    case Op.AllReduce: collective.AllReduce(r, pointer, length, CancellationToken.None); break;
                    case Op.ReduceScatter: collective.ReduceScatter(r, pointer, length, CancellationToken.None); break;
                    case Op.AllGather: collective.AllGather(r, pointer, length, CancellationToken.None); break;
                    default: collective.Broadcast(r, 1, pointer, length, CancellationToken.None); break;
                }

                cuda.CopyToHost(pointer, buffers[r]);
            }
            finally
            {
                cuda.Free(pointer);
            }
        });
        return buffers;
    }

    private static float[][] Reference(Op op, int ranks, int length)
    {
        if (op == Op.Broadcast)
        {
            var root = Contributions(ranks, length)[1];
            return Enumerable.Range(0, ranks).Select(_ => root.ToArray()).ToArray();
        }

        using var shared = new SharedMemoryCollective(ranks);
        return RunHost(shared, op, length);
    }

    [FakeNcclTheory]
    [InlineData(Op.AllReduce, 3, 10)]
    [InlineData(Op.ReduceScatter, 3, 10)]
    [InlineData(Op.AllGather, 3, 10)]
    [InlineData(Op.Broadcast, 3, 10)]
    [InlineData(Op.ReduceScatter, 4, 2)]
    [InlineData(Op.AllGather, 4, 2)]
    [InlineData(Op.ReduceScatter, 2, 4096)]
    [InlineData(Op.AllGather, 2, 4096)]
    [InlineData(Op.ReduceScatter, 3, 0)]
    public void Host_memory_results_equal_the_shared_memory_collective(Op op, int ranks, int length)
    {
        using var nccl = NcclCollective.Create(FakeNccl.Nccl, FakeNccl.Cuda, Enumerable.Range(0, ranks).ToArray());

        var result = RunHost(nccl, op, length);

        Assert.Equal(Reference(op, ranks, length), result);
    }

    [FakeNcclTheory]
    [InlineData(Op.AllReduce, 3, 10)]
    [InlineData(Op.ReduceScatter, 3, 10)]
    [InlineData(Op.AllGather, 3, 10)]
    [InlineData(Op.Broadcast, 3, 10)]
    [InlineData(Op.ReduceScatter, 3, 12)]
    [InlineData(Op.AllGather, 3, 12)]
    [InlineData(Op.ReduceScatter, 4, 3)]
    [InlineData(Op.AllGather, 4, 3)]
    public void Device_pointer_results_equal_the_shared_memory_collective(Op op, int ranks, int length)
    {
        var cuda = FakeNccl.Cuda;
        using var nccl = NcclCollective.Create(FakeNccl.Nccl, cuda, Enumerable.Range(0, ranks).ToArray());

        var result = RunDevice(nccl, cuda, op, length);

        Assert.Equal(Reference(op, ranks, length), result);
    }

    [FakeNcclFact]
    public void The_hierarchical_all_reduce_over_nccl_and_a_cross_node_ring_sums_every_trainer()
    {
        // Two nodes of two trainers: NCCL inside each node, the in-memory ring between them.
        const int Length = 1001;
        var ring = InMemoryRingTransport.CreateRing(2, maxChunkElements: 64);
        var nodes = new[]
        {
            NcclCollective.Create(FakeNccl.Nccl, FakeNccl.Cuda, [0, 1]),
            NcclCollective.Create(FakeNccl.Nccl, FakeNccl.Cuda, [2, 3]),
        };
        var buffers = Contributions(4, Length);
        try
        {
            OnEveryRank(4, trainer => new ProcessGroup(new GroupMember(trainer, 4, trainer % 2, trainer / 2, 2), nodes[trainer / 2], ring[trainer / 2],
                    WireCompression.None, new GenerationScope(1, CancellationToken.None))
                .AllReduce(buffers[trainer], new CollectiveKey(0, 0)));
        }
        finally
        {
            Array.ForEach(nodes, n => n.Dispose());
        }

        var expected = Enumerable.Range(0, Length).Select(i => Enumerable.Range(0, 4).Sum(r => (r + 1) * 1000f + i)).ToArray();
        Assert.All(buffers, b => Assert.Equal(expected, b));
    }

    [FakeNcclFact]
    public void A_device_bucket_crosses_to_the_host_only_as_the_trainers_shard_of_the_node_sum()
    {
        // Two nodes of two trainers, a bucket whose length the local size does not divide.
        const int Length = 1001;
        var cuda = FakeNccl.Cuda;
        var ring = InMemoryRingTransport.CreateRing(2, maxChunkElements: 64);
        var nodes = new[]
        {
            NcclCollective.Create(FakeNccl.Nccl, cuda, [0, 1]),
            NcclCollective.Create(FakeNccl.Nccl, cuda, [2, 3]),
        };
        var buffers = Contributions(4, Length);
        var memories = Enumerable.Range(0, 4).Select(_ => new CountingDeviceMemory(cuda)).ToArray();
        try
        {
            OnEveryRank(4, trainer =>
            {
                var (node, local) = (nodes[trainer / 2], trainer % 2);
                cuda.SetDevice(node.DeviceOf(local));
                var pointer = cuda.Malloc((long)Length * sizeof(float));
                try
                {
                    // The gradient is on the device before the step (put there here, outside the counted copies).
                    cuda.CopyToDevice(buffers[trainer], pointer);
                    var group = new ProcessGroup(new GroupMember(trainer, 4, local, trainer / 2, 2), node, ring[trainer / 2], WireCompression.None,
                        new GenerationScope(1, CancellationToken.None)) { Device = new DeviceCollectives(node, memories[trainer]) };
                    group.AllReduce(new DeviceBuffer(pointer, Length), new CollectiveKey(0, 0));
                    cuda.CopyToHost(pointer, buffers[trainer]);
                }
                finally
                {
                    cuda.Free(pointer);
                }
            });
        }
        finally
        {
            Array.ForEach(nodes, n => n.Dispose());
        }

        var expected = Enumerable.Range(0, Length).Select(i => Enumerable.Range(0, 4).Sum(r => (r + 1) * 1000f + i)).ToArray();
        Assert.All(buffers, b => Assert.Equal(expected, b));
        for (var trainer = 0; trainer < 4; trainer++)
        {
            var shardBytes = (long)Partition.Slice(Length, 2, trainer % 2).Count * sizeof(float);
            Assert.Equal(shardBytes, memories[trainer].DeviceToHostBytes);
            Assert.Equal(shardBytes, memories[trainer].HostToDeviceBytes);
            Assert.True(memories[trainer].DeviceToHostBytes < (long)Length * sizeof(float), "the whole bucket crossed to the host");
        }
    }

    [Fact]
    public void A_device_bucket_without_a_device_collective_is_refused_naming_the_rank()
    {
        using var intra = new SharedMemoryCollective(1);
        var group = new ProcessGroup(new GroupMember(0, 1, 0, 0, 1), intra, null, WireCompression.None, new GenerationScope(1, CancellationToken.None));
        var e = Assert.Throws<InvalidOperationException>(() => group.AllReduce(new DeviceBuffer(IntPtr.Zero, 4), new CollectiveKey(0, 0)));
        Assert.Contains("rank 0", e.Message);
    }

    [FakeNcclFact]
    public void Ids_travel_as_bytes_and_communicators_can_be_made_by_init_all()
    {
        var library = FakeNccl.Nccl;
        var id = NcclUniqueId.FromBytes(library.GetUniqueId().ToBytes());
        using var fromMessage = NcclCollective.Create(library, FakeNccl.Cuda, [0, 1], id);
        using var initAll = NcclCollective.CreateWithInitAll(library, FakeNccl.Cuda, [0, 1]);

        Assert.Equal(id, fromMessage.UniqueId);
        Assert.Null(initAll.UniqueId);
        Assert.Equal(Reference(Op.AllReduce, 2, 7), RunHost(fromMessage, Op.AllReduce, 7));
        Assert.Equal(Reference(Op.AllReduce, 2, 7), RunHost(initAll, Op.AllReduce, 7));
        Assert.Equal("2.28.3", library.VersionText);
        Assert.Equal("configured path", library.Source);
    }

    [FakeNcclFact]
    public void A_failing_nccl_call_names_call_and_code_aborts_the_communicators_and_refuses_later_calls()
    {
        using var nccl = NcclCollective.Create(FakeNccl.Nccl, FakeNccl.Cuda, [2]);
        FakeNccl.FailNextCollective(5);

        var error = Assert.Throws<NcclException>(() => nccl.AllReduce(0, new float[8], CancellationToken.None));

        Assert.Equal("ncclAllReduce failed: ncclInvalidUsage (5): invalid usage (fake)", error.Message);
        Assert.Contains("ncclAllReduce on local rank 0 (CUDA device 2) failed", nccl.AbortReason);
        var refused = Assert.Throws<InvalidOperationException>(() => nccl.ReduceScatter(0, new float[8], CancellationToken.None));
        Assert.Contains("aborted", refused.Message);
    }

    [FakeNcclFact]
    public void Cancellation_aborts_the_communicators()
    {
        using var nccl = NcclCollective.Create(FakeNccl.Nccl, FakeNccl.Cuda, [0]);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();

        Assert.ThrowsAny<OperationCanceledException>(() => nccl.AllGather(0, new float[8], cancelled.Token));

        Assert.NotNull(nccl.AbortReason);
    }

    [FakeNcclFact]
    public void Two_ranks_on_one_device_are_refused()
    {
        var error = Assert.Throws<ArgumentException>(() => NcclCollective.Create(FakeNccl.Nccl, FakeNccl.Cuda, [1, 1]));

        Assert.Contains("its own CUDA device", error.Message);
    }

    [FakeNcclFact]
    public void Cuda_errors_carry_the_call_and_the_runtime_name()
    {
        var error = Assert.Throws<CudaException>(() => FakeNccl.Cuda.SetDevice(9));

        Assert.Equal("cudaSetDevice failed: cudaErrorFake (101): fake CUDA error", error.Message);
    }

    [FakeNcclFact]
    public void Auto_selects_nccl_when_it_loads_and_the_devices_suffice()
    {
        var selection = IntraNodeCollectives.Select(IntraNodeBackend.Auto, 2, devicesAreCuda: true, FakeNccl.NcclPath, FakeNccl.Locations);
        using var collective = selection.Collective;

        Assert.IsType<NcclCollective>(collective);
        Assert.Equal(IntraNodeBackend.Nccl, selection.Backend);
        Assert.Contains("NCCL 2.28.3", selection.Reason);
        Assert.Contains("CUDA devices 0,1", selection.Reason);
    }

    [FakeNcclFact]
    public void Nccl_for_more_trainers_than_devices_is_an_error_and_auto_falls_back()
    {
        // The fake reports 4 devices.
        var error = Assert.Throws<InvalidOperationException>(() =>
            IntraNodeCollectives.Select(IntraNodeBackend.Nccl, 5, devicesAreCuda: true, FakeNccl.NcclPath, FakeNccl.Locations));
        var fallback = IntraNodeCollectives.Select(IntraNodeBackend.Auto, 5, devicesAreCuda: true, FakeNccl.NcclPath, FakeNccl.Locations);
        using var collective = fallback.Collective;

        Assert.Contains("5 trainer(s) need as many CUDA devices and 4 device(s)", error.Message);
        Assert.IsType<SharedMemoryCollective>(collective);
        Assert.Contains("5 trainer(s) need as many CUDA devices", fallback.Reason);
    }
}
