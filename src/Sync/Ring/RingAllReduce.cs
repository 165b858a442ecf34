using ActorTrain.Sync.Reduction;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync.Ring;

/// <summary>
/// In-place sum of a buffer across the peers of a ring, following <see cref="RingSchedule"/>.
/// Segments travel as chunks of at most <see cref="IRingTransport.MaxChunkElements"/> floats and
/// the transfer is pipelined per chunk: a sending loop and a receiving loop run concurrently, and a
/// chunk is forwarded at the next step as soon as it has been received and merged, without waiting
/// for the rest of its segment.
/// </summary>
public static class RingAllReduce
{
    /// <summary>
    /// Replaces <paramref name="buffer"/> with the element-wise sum of the buffers of all ring peers.
    /// Every peer must call this with the same length and the same generation, step, bucket and lane.
    /// All peers end with bitwise identical buffers: each segment is summed once, by its owner, and copied
    /// from there.
    /// </summary>
    public static async Task RunAsync(
        IRingTransport transport,
        Memory<float> buffer,
        long generation,
        long step,
        int bucket,
        int lane,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transport);
        int peerCount = transport.PeerCount;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(peerCount, $"{nameof(transport)}.{nameof(transport.PeerCount)}");
        cancellationToken.ThrowIfCancellationRequested();
        if (peerCount == 1)
        {
            return;
        }

        int maxChunk = transport.MaxChunkElements;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxChunk, $"{nameof(transport)}.{nameof(transport.MaxChunkElements)}");

        var run = new Run(transport, buffer, generation, step, bucket, lane, maxChunk);
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);

        // Each loop waits on the other's progress; if one fails the other must be stopped, not left waiting.
        Task sending = CancelOnFailure(run.SendAllAsync(failed.Token), failed);
        Task receiving = CancelOnFailure(run.ReceiveAllAsync(failed.Token), failed);
        await Task.WhenAll(sending, receiving).ConfigureAwait(false);
    }

    private static async Task CancelOnFailure(Task task, CancellationTokenSource failed)
    {
        try
        {
            await task.ConfigureAwait(false);
        }
        catch
        {
            failed.Cancel();
            throw;
        }
    }

    /// <summary>State of one all-reduce on one peer.</summary>
    private sealed class Run
    {
        private readonly IRingTransport transport;
        private readonly Memory<float> buffer;
        private readonly long generation;
        private readonly long step;
        private readonly int bucket;
        private readonly int lane;
        private readonly int maxChunk;
        private readonly RingSchedule schedule;
        private readonly (int Offset, int Count)[] segments;

        // Chunks are numbered consecutively over all steps: firstSent[k] is the running number of
        // the first chunk sent at step k (likewise for received), so "chunk c of step k is done"
        // becomes "the counter has passed firstX[k] + c".
        private readonly long[] firstSent;
        private readonly long[] firstReceived;
        private readonly ProgressCounter sent = new();
        private readonly ProgressCounter received = new();

        public Run(IRingTransport transport, Memory<float> buffer, long generation, long step, int bucket, int lane, int maxChunk)
        {
            this.transport = transport;
            this.buffer = buffer;
            this.generation = generation;
            this.step = step;
            this.bucket = bucket;
            this.lane = lane;
            this.maxChunk = maxChunk;
            schedule = RingSchedule.For(transport.PeerCount, transport.PeerIndex);
            segments = new (int, int)[transport.PeerCount];
            for (int i = 0; i < segments.Length; i++)
            {
                segments[i] = Partition.Slice(buffer.Length, segments.Length, i);
            }

            int stepCount = schedule.Steps.Count;
            firstSent = new long[stepCount];
            firstReceived = new long[stepCount];
            for (int k = 1; k < stepCount; k++)
            {
                firstSent[k] = firstSent[k - 1] + ChunkCount(schedule.Steps[k - 1].SendSegment);
                firstReceived[k] = firstReceived[k - 1] + ChunkCount(schedule.Steps[k - 1].ReceiveSegment);
            }
        }

        public async Task SendAllAsync(CancellationToken cancellationToken)
        {
            foreach (var ringStep in schedule.Steps)
            {
                int k = ringStep.Index;
                int chunks = ChunkCount(ringStep.SendSegment);
                for (int c = 0; c < chunks; c++)
                {
                    // What is sent at step k was received at step k-1 (same segment, same chunking):
                    // forward this chunk once it is merged, not once the whole segment is.
                    if (k > 0)
                    {
                        await received.WaitForAsync(firstReceived[k - 1] + c + 1, cancellationToken).ConfigureAwait(false);
                    }

                    var key = new ChunkKey(generation, step, bucket, lane, k, c);
                    await transport.SendAsync(schedule.RightNeighbour, key, ChunkOf(ringStep.SendSegment, c), cancellationToken)
                        .ConfigureAwait(false);
                    sent.Advance();
                }
            }
        }

        public async Task ReceiveAllAsync(CancellationToken cancellationToken)
        {
            int reduceScatterSteps = schedule.ReduceScatterStepCount;
            foreach (var ringStep in schedule.Steps)
            {
                int k = ringStep.Index;
                int chunks = ChunkCount(ringStep.ReceiveSegment);
                for (int c = 0; c < chunks; c++)
                {
                    var key = new ChunkKey(generation, step, bucket, lane, k, c);
                    var incoming = await transport.ReceiveAsync(schedule.LeftNeighbour, key, cancellationToken).ConfigureAwait(false);
                    var target = ChunkOf(ringStep.ReceiveSegment, c);
                    if (incoming.Length != target.Length)
                    {
                        throw new InvalidOperationException(
                            $"Ring chunk {key} from peer {schedule.LeftNeighbour} has {incoming.Length} elements, expected {target.Length}; " +
                            "peers disagree on the buffer length.");
                    }

                    // All-gather step t overwrites the segment this peer sent at reduce-scatter step t;
                    // that send must be finished before the buffer under it changes.
                    int overwrittenSendStep = k - reduceScatterSteps;
                    if (overwrittenSendStep >= 0)
                    {
                        await sent.WaitForAsync(firstSent[overwrittenSendStep] + c + 1, cancellationToken).ConfigureAwait(false);
                    }

                    if (ringStep.Op == RingOp.Reduce)
                    {
                        Kernels.Add(target.Span, incoming.Span);
                    }
                    else
                    {
                        incoming.Span.CopyTo(target.Span);
                    }

                    received.Advance();
                }
            }
        }

        private int ChunkCount(int segment) => (int)(((long)segments[segment].Count + maxChunk - 1) / maxChunk);

        private Memory<float> ChunkOf(int segment, int chunk)
        {
            var (offset, count) = segments[segment];
            int start = chunk * maxChunk;
            return buffer.Slice(offset + start, Math.Min(maxChunk, count - start));
        }
    }

    /// <summary>A monotonic counter one other loop can wait on.</summary>
    private sealed class ProgressCounter
    {
        private readonly Lock gate = new();
        private long value;
        private long awaitedValue;
        private TaskCompletionSource? waiter;

        public void Advance()
        {
            TaskCompletionSource? release = null;
            lock (gate)
            {
                value++;
                if (waiter is not null && value >= awaitedValue)
                {
                    release = waiter;
                    waiter = null;
                }
            }

            release?.TrySetResult();
        }

        public ValueTask WaitForAsync(long target, CancellationToken cancellationToken)
        {
            lock (gate)
            {
                if (value >= target)
                {
                    return ValueTask.CompletedTask;
                }

                // Asynchronous continuations: the waiting loop must not run inside the other loop's Advance.
                waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                awaitedValue = target;
                return new ValueTask(waiter.Task.WaitAsync(cancellationToken));
            }
        }
    }
}
