using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Collectives.Nccl;

namespace ActorTrain.Sync.Tests.Nccl;

/// <summary>NCCL on real GPUs: one local rank per visible device, each on its own thread. Skipped without a GPU.</summary>
public class NcclCollectiveGpuTests
{
    // Not divisible by 2, 3, 4, …: exercises the padded staging layout on every multi-GPU count.
    private const int Length = 1000 * 1000 + 7;

    private static int[] AllDevices() => Enumerable.Range(0, GpuEnvironment.DeviceCount).ToArray();

    private static float Value(int rank, int i) => (rank + 1) * 0.5f + (i % 97);

    private static float[][] Buffers(int ranks) =>
        Enumerable.Range(0, ranks).Select(r => Enumerable.Range(0, Length).Select(i => Value(r, i)).ToArray()).ToArray();

    private static float Sum(int ranks, int i) => Enumerable.Range(0, ranks).Sum(r => Value(r, i));

    private static void OnEveryRank(int ranks, Action<int> body)
    {
        var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        var threads = Enumerable.Range(0, ranks).Select(r => new Thread(() =>
        {
            try
            {
                body(r);
            }
            catch (Exception e)
            {
                errors.Add(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        if (!errors.IsEmpty)
        {
            throw new AggregateException(errors);
        }
    }

    [GpuFact]
    public void Host_all_reduce_sums_every_rank()
    {
        var devices = AllDevices();
        using var nccl = NcclCollective.Create(GpuEnvironment.Nccl, GpuEnvironment.Cuda, devices);
        var buffers = Buffers(devices.Length);

        OnEveryRank(devices.Length, r => nccl.AllReduce(r, buffers[r], CancellationToken.None));

        foreach (var buffer in buffers)
        {
            for (var i = 0; i < Length; i += 4999)
            {
                Assert.Equal(Sum(devices.Length, i), buffer[i], 3);
            }
        }
    }

    [GpuFact]
    public void Host_reduce_scatter_then_all_gather_equals_all_reduce_on_partition_slices()
    {
        var devices = AllDevices();
        using var nccl = NcclCollective.Create(GpuEnvironment.Nccl, GpuEnvironment.Cuda, devices);
        var buffers = Buffers(devices.Length);

        OnEveryRank(devices.Length, r => nccl.ReduceScatter(r, buffers[r], CancellationToken.None));
        for (var r = 0; r < devices.Length; r++)
        {
            var (offset, count) = Partition.Slice(Length, devices.Length, r);
            Assert.Equal(Sum(devices.Length, offset), buffers[r][offset], 3);
            Assert.Equal(Sum(devices.Length, offset + count - 1), buffers[r][offset + count - 1], 3);
        }

        OnEveryRank(devices.Length, r => nccl.AllGather(r, buffers[r], CancellationToken.None));
        foreach (var buffer in buffers)
        {
            for (var i = 0; i < Length; i += 4999)
            {
                Assert.Equal(Sum(devices.Length, i), buffer[i], 3);
            }

            Assert.Equal(Sum(devices.Length, Length - 1), buffer[Length - 1], 3);
        }
    }

    [GpuFact]
    public void Device_all_reduce_and_broadcast_work_on_cuda_malloc_buffers()
    {
        var devices = AllDevices();
        var cuda = GpuEnvironment.Cuda;
        using var nccl = NcclCollective.Create(GpuEnvironment.Nccl, cuda, devices);
        var results = new float[devices.Length][];

        OnEveryRank(devices.Length, r =>
        {
            cuda.SetDevice(nccl.DeviceOf(r));
            var pointer = cuda.Malloc((long)Length * sizeof(float));
            try
            {
                cuda.CopyToDevice(Enumerable.Range(0, Length).Select(i => Value(r, i)).ToArray(), pointer);
                nccl.AllReduce(r, pointer, Length, CancellationToken.None);
                nccl.Broadcast(r, rootLocalRank: 0, pointer, Length, CancellationToken.None);
                results[r] = new float[Length];
                cuda.CopyToHost(pointer, results[r]);
            }
            finally
            {
                cuda.Free(pointer);
            }
        });

        foreach (var result in results)
        {
            Assert.Equal(Sum(devices.Length, 0), result[0], 3);
            Assert.Equal(Sum(devices.Length, Length - 1), result[Length - 1], 3);
        }
    }

    [GpuFact]
    public void A_cancelled_call_aborts_the_communicators_and_later_calls_are_refused()
    {
        var devices = AllDevices();
        using var nccl = NcclCollective.Create(GpuEnvironment.Nccl, GpuEnvironment.Cuda, devices);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();

        Assert.ThrowsAny<OperationCanceledException>(() => nccl.AllReduce(0, new float[16], cancelled.Token));

        Assert.NotNull(nccl.AbortReason);
        var refused = Assert.Throws<InvalidOperationException>(() => nccl.AllReduce(0, new float[16], CancellationToken.None));
        Assert.Contains("aborted", refused.Message);
    }
}
