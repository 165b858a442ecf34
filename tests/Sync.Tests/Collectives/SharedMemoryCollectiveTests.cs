using ActorTrain.Sync.Collectives;

namespace ActorTrain.Sync.Tests.Collectives;

public class SharedMemoryCollectiveTests
{
    public static TheoryData<int, int> Shapes()
    {
        var data = new TheoryData<int, int>();
        for (int size = 1; size <= 4; size++)
        {
            foreach (int length in new[] { 0, 1, size + 1, 5000 })
            {
                data.Add(size, length);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task Reduce_scatter_leaves_each_rank_the_sum_of_its_own_slice(int size, int length)
    {
        using var collective = new SharedMemoryCollective(size);
        var buffers = Inputs(size, length);
        var originals = buffers.Select(b => b.ToArray()).ToArray();

        await TestData.RunOnThreads(size, (rank, ct) => collective.ReduceScatter(rank, buffers[rank], ct));

        for (int rank = 0; rank < size; rank++)
        {
            var (offset, count) = Partition.Slice(length, size, rank);
            for (int i = 0; i < length; i++)
            {
                // The own slice holds the sum in rank order; everything else is untouched.
                float expected = i >= offset && i < offset + count ? SumInRankOrder(originals, i) : originals[rank][i];
                Assert.Equal(expected, buffers[rank][i]);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task All_gather_copies_every_slice_from_its_owner(int size, int length)
    {
        using var collective = new SharedMemoryCollective(size);
        var buffers = Inputs(size, length);
        var expected = new float[length];
        for (int rank = 0; rank < size; rank++)
        {
            var (offset, count) = Partition.Slice(length, size, rank);
            Array.Copy(buffers[rank], offset, expected, offset, count);
        }

        await TestData.RunOnThreads(size, (rank, ct) => collective.AllGather(rank, buffers[rank], ct));

        Assert.All(buffers, b => Assert.Equal(expected, b));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public async Task All_reduce_gives_every_rank_the_same_sum_in_rank_order(int size, int length)
    {
        using var collective = new SharedMemoryCollective(size);
        var buffers = Inputs(size, length);
        var expected = Enumerable.Range(0, length).Select(i => SumInRankOrder(buffers, i)).ToArray();

        await TestData.RunOnThreads(size, (rank, ct) => collective.AllReduce(rank, buffers[rank], ct));

        Assert.All(buffers, b => Assert.Equal(expected, b));
    }

    [Fact]
    public async Task Repeated_all_reduces_are_bitwise_reproducible()
    {
        const int size = 4;
        using var collective = new SharedMemoryCollective(size);
        float[]? first = null;
        for (int run = 0; run < 20; run++)
        {
            var buffers = Inputs(size, 10_001);
            await TestData.RunOnThreads(size, (rank, ct) =>
            {
                // Mix the operations so consecutive phases reuse the same barrier.
                collective.ReduceScatter(rank, buffers[rank], ct);
                collective.AllGather(rank, buffers[rank], ct);
            });

            first ??= buffers[0];
            Assert.All(buffers, b => Assert.Equal(first, b));
        }
    }

    [Fact]
    public async Task Buffers_of_different_lengths_make_every_participant_throw()
    {
        const int size = 3;
        using var collective = new SharedMemoryCollective(size);
        var errors = new Exception?[size];

        await TestData.RunOnThreads(size, (rank, ct) =>
        {
            var buffer = new float[rank == 2 ? 11 : 10];
            errors[rank] = Record.Exception(() => collective.AllReduce(rank, buffer, ct));
        });

        Assert.All(errors, e => Assert.IsType<InvalidOperationException>(e));
        Assert.Contains("local rank 2: 11", errors[0]!.Message);

        // The collective is still usable afterwards.
        var buffers = Inputs(size, 10);
        var expected = Enumerable.Range(0, 10).Select(i => SumInRankOrder(buffers, i)).ToArray();
        await TestData.RunOnThreads(size, (rank, ct) => collective.AllReduce(rank, buffers[rank], ct));
        Assert.All(buffers, b => Assert.Equal(expected, b));
    }

    [Fact]
    public async Task A_missing_participant_ends_in_cancellation_not_a_hang()
    {
        using var collective = new SharedMemoryCollective(2);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        var lonely = Task.Factory.StartNew(
            () => collective.AllReduce(0, new float[10], cts.Token),
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => lonely.WaitAsync(TestData.Timeout));
    }

    [Fact]
    public void A_single_trainer_needs_no_partner()
    {
        using var collective = new SharedMemoryCollective(1);
        var buffer = new float[] { 1, 2, 3 };

        collective.ReduceScatter(0, buffer, CancellationToken.None);
        collective.AllGather(0, buffer, CancellationToken.None);
        collective.AllReduce(0, buffer, CancellationToken.None);

        Assert.Equal([1f, 2f, 3f], buffer);
        Assert.Equal("shared-memory", collective.Name);
        Assert.Equal(1, collective.LocalSize);
    }

    [Fact]
    public void Invalid_ranks_and_sizes_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SharedMemoryCollective(0));
        using var collective = new SharedMemoryCollective(2);
        Assert.Throws<ArgumentOutOfRangeException>(() => collective.AllReduce(2, new float[4], CancellationToken.None));
    }

    private static float[][] Inputs(int size, int length) =>
        Enumerable.Range(0, size).Select(rank => TestData.RandomFloats(length, seed: (rank * 7) + length)).ToArray();

    private static float SumInRankOrder(float[][] buffers, int i)
    {
        float sum = buffers[0][i];
        for (int rank = 1; rank < buffers.Length; rank++)
        {
            sum += buffers[rank][i];
        }

        return sum;
    }
}
