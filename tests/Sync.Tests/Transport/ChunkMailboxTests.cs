using System.Runtime.InteropServices;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync.Tests.Transport;

public class ChunkMailboxTests
{
    private static ChunkKey Key(long generation = 1, int chunk = 0) => new(generation, Step: 4, Bucket: 2, Lane: 0, RingStep: 1, chunk);

    [Fact]
    public async Task A_chunk_delivered_first_is_returned_to_the_later_receive()
    {
        var mailbox = new ChunkMailbox();

        Assert.True(mailbox.Deliver(3, Key(), new float[] { 1, 2 }));
        Assert.Equal(1, mailbox.PendingCount);
        var data = await mailbox.ReceiveAsync(3, Key(), CancellationToken.None);

        Assert.Equal([1f, 2f], data.ToArray());
        Assert.Equal(0, mailbox.PendingCount);
    }

    [Fact]
    public async Task A_waiting_receive_completes_when_the_chunk_arrives()
    {
        var mailbox = new ChunkMailbox();

        var receive = mailbox.ReceiveAsync(3, Key(), CancellationToken.None).AsTask();
        Assert.False(receive.IsCompleted);
        Assert.True(mailbox.Deliver(3, Key(), new float[] { 5 }));

        Assert.Equal(new float[] { 5f }, (await receive.WaitAsync(TestData.Timeout)).ToArray());
        Assert.Equal(0, mailbox.PendingCount);
    }

    [Fact]
    public async Task Chunks_are_matched_on_peer_and_every_key_field()
    {
        var mailbox = new ChunkMailbox();
        var key = Key();
        ChunkKey[] others =
        [
            key with { Generation = 2 }, key with { Step = 5 }, key with { Bucket = 3 },
            key with { Lane = 1 }, key with { RingStep = 2 }, key with { Chunk = 1 },
        ];

        var receive = mailbox.ReceiveAsync(3, key, CancellationToken.None).AsTask();
        Assert.True(mailbox.Deliver(4, key, new float[] { 9 }));
        foreach (var other in others)
        {
            Assert.True(mailbox.Deliver(3, other, new float[] { 9 }));
        }

        Assert.False(receive.IsCompleted);
        Assert.True(mailbox.Deliver(3, key, new float[] { 1 }));
        Assert.Equal(new float[] { 1f }, (await receive.WaitAsync(TestData.Timeout)).ToArray());
        Assert.Equal(7, mailbox.PendingCount);
    }

    [Fact]
    public async Task A_duplicate_of_a_pending_chunk_is_dropped_and_counted()
    {
        var mailbox = new ChunkMailbox();

        Assert.True(mailbox.Deliver(0, Key(), new float[] { 1 }));
        Assert.False(mailbox.Deliver(0, Key(), new float[] { 2 }));

        Assert.Equal(1, mailbox.DuplicatesDropped);
        Assert.Equal(new float[] { 1f }, (await mailbox.ReceiveAsync(0, Key(), CancellationToken.None)).ToArray());
    }

    [Fact]
    public void Chunks_of_a_dropped_generation_are_refused_as_stale()
    {
        var mailbox = new ChunkMailbox();
        mailbox.DropGenerationsBefore(5);

        Assert.False(mailbox.Deliver(0, Key(generation: 4), new float[] { 1 }));
        Assert.True(mailbox.Deliver(0, Key(generation: 5), new float[] { 1 }));

        Assert.Equal(1, mailbox.StaleDropped);
        Assert.Equal(5, mailbox.LowestLiveGeneration);
        Assert.Equal(1, mailbox.PendingCount);
    }

    [Fact]
    public async Task Dropping_generations_discards_their_pending_chunks_and_fails_their_receives()
    {
        var mailbox = new ChunkMailbox();
        mailbox.Deliver(0, Key(generation: 1, chunk: 0), new float[] { 1 });
        mailbox.Deliver(0, Key(generation: 1, chunk: 1), new float[] { 1 });
        mailbox.Deliver(0, Key(generation: 2, chunk: 0), new float[] { 1 });
        var oldReceive = mailbox.ReceiveAsync(0, Key(generation: 1, chunk: 5), CancellationToken.None).AsTask();
        var liveReceive = mailbox.ReceiveAsync(0, Key(generation: 2, chunk: 5), CancellationToken.None).AsTask();

        Assert.Equal(2, mailbox.DropGenerationsBefore(2));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => oldReceive.WaitAsync(TestData.Timeout));
        Assert.False(liveReceive.IsCompleted);
        Assert.Equal(1, mailbox.PendingCount);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => mailbox.ReceiveAsync(0, Key(generation: 1, chunk: 6), CancellationToken.None).AsTask());

        mailbox.Deliver(0, Key(generation: 2, chunk: 5), new float[] { 3 });
        Assert.Equal(new float[] { 3f }, (await liveReceive.WaitAsync(TestData.Timeout)).ToArray());
    }

    [Fact]
    public void Generations_never_move_backwards()
    {
        var mailbox = new ChunkMailbox();
        mailbox.DropGenerationsBefore(7);
        mailbox.DropGenerationsBefore(3);

        Assert.Equal(7, mailbox.LowestLiveGeneration);
        Assert.False(mailbox.Deliver(0, Key(generation: 5), new float[] { 1 }));
    }

    [Fact]
    public async Task Cancelling_a_receive_removes_it_so_the_chunk_stays_pending()
    {
        var mailbox = new ChunkMailbox();
        using var cts = new CancellationTokenSource();

        var receive = mailbox.ReceiveAsync(0, Key(), cts.Token).AsTask();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => receive.WaitAsync(TestData.Timeout));

        Assert.True(mailbox.Deliver(0, Key(), new float[] { 4 }));
        Assert.Equal(1, mailbox.PendingCount);
        Assert.Equal(new float[] { 4f }, (await mailbox.ReceiveAsync(0, Key(), CancellationToken.None)).ToArray());
    }

    [Fact]
    public async Task An_already_cancelled_receive_fails_at_once()
    {
        var mailbox = new ChunkMailbox();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            () => mailbox.ReceiveAsync(0, Key(), new CancellationToken(canceled: true)).AsTask());
    }

    [Fact]
    public void Two_receives_for_one_key_are_a_programming_error()
    {
        var mailbox = new ChunkMailbox();
        _ = mailbox.ReceiveAsync(0, Key(), CancellationToken.None);

        Assert.Throws<InvalidOperationException>(() => mailbox.ReceiveAsync(0, Key(), CancellationToken.None));
    }

    [Fact]
    public async Task Concurrent_deliveries_and_receives_all_meet()
    {
        var mailbox = new ChunkMailbox();
        const int count = 20_000;

        var receiving = Task.Run(async () =>
        {
            for (int i = 0; i < count; i++)
            {
                var data = await mailbox.ReceiveAsync(1, Key(chunk: i), CancellationToken.None);
                Assert.Equal(i, data.Span[0]);
            }
        });
        var delivering = Task.Run(() =>
        {
            for (int i = count - 1; i >= 0; i--)
            {
                Assert.True(mailbox.Deliver(1, Key(chunk: i), new float[] { i }));
            }
        });

        await Task.WhenAll(receiving, delivering).WaitAsync(TestData.Timeout);
        Assert.Equal(0, mailbox.PendingCount);
    }

    [Fact]
    public async Task Every_dropped_chunk_goes_to_the_discard_callback_once_and_a_received_one_never()
    {
        var discarded = new List<float[]>();
        var mailbox = new ChunkMailbox(chunk =>
        {
            Assert.True(MemoryMarshal.TryGetArray(chunk, out var segment));
            lock (discarded)
            {
                discarded.Add(segment.Array!);
            }
        });
        float[] taken = [1], pendingOld = [2], duplicate = [3], stale = [4], pendingAtClose = [5], afterClose = [6];

        Assert.True(mailbox.Deliver(0, Key(generation: 2), taken));
        Assert.True(mailbox.Deliver(0, Key(generation: 1), pendingOld));
        Assert.False(mailbox.Deliver(0, Key(generation: 2), duplicate));
        var received = await mailbox.ReceiveAsync(0, Key(generation: 2), CancellationToken.None);
        Assert.True(MemoryMarshal.TryGetArray(received, out var receivedArray));
        Assert.Same(taken, receivedArray.Array);
        Assert.Equal(1, mailbox.DropGenerationsBefore(2));
        Assert.False(mailbox.Deliver(0, Key(generation: 1), stale));
        Assert.True(mailbox.Deliver(0, Key(generation: 3), pendingAtClose));
        var waiting = mailbox.ReceiveAsync(0, Key(generation: 4), CancellationToken.None).AsTask();

        mailbox.Close();
        mailbox.Close();
        Assert.False(mailbox.Deliver(0, Key(generation: 5), afterClose));

        Assert.Equal([duplicate, pendingOld, stale, pendingAtClose, afterClose], discarded);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(TestData.Timeout));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => mailbox.ReceiveAsync(0, Key(generation: 5), CancellationToken.None).AsTask());
        Assert.Equal(0, mailbox.PendingCount);
    }

    [Fact]
    public async Task A_flood_of_future_chunks_keeps_the_held_bytes_of_a_peer_within_the_bound()
    {
        const long bound = 10 * 4 * sizeof(float);
        var discarded = 0;
        var mailbox = new ChunkMailbox(_ => Interlocked.Increment(ref discarded), bound);

        // Chunks no receive asks for: only the first ten of four floats fit.
        var accepted = Enumerable.Range(0, 1000).Count(i => mailbox.Deliver(3, Key(chunk: i), new float[4]));

        Assert.Equal(10, accepted);
        Assert.Equal(bound, mailbox.PendingBytes(3));
        Assert.Equal(990, mailbox.LimitDropped);
        Assert.Equal(990, discarded);
        // Another peer has a bound of its own, and a chunk a waiting receive takes is never held.
        Assert.True(mailbox.Deliver(4, Key(), new float[4]));
        var waiting = mailbox.ReceiveAsync(3, Key(chunk: 5000), CancellationToken.None).AsTask();
        Assert.True(mailbox.Deliver(3, Key(chunk: 5000), new float[4]));
        await waiting.WaitAsync(TestData.Timeout);
        // Taking a held chunk frees its bytes for the next.
        await mailbox.ReceiveAsync(3, Key(chunk: 0), CancellationToken.None);
        Assert.Equal(bound - 4 * sizeof(float), mailbox.PendingBytes(3));
        Assert.True(mailbox.Deliver(3, Key(chunk: 2000), new float[4]));
        Assert.False(mailbox.Deliver(3, Key(chunk: 2001), new float[4]));
        // Leaving the generation frees them all.
        mailbox.DropGenerationsBefore(2);
        Assert.Equal(0, mailbox.PendingBytes(3));
    }
}
