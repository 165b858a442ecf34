using System.Buffers;
using ActorTrain.Sync.Compression;
using ActorTrain.Sync.Reduction;
using ActorTrain.Sync.Transport;

namespace ActorTrain.Sync.Ring;

/// <summary>
/// In-place sum of a buffer across the peers of a ring, following <see cref="RingSchedule"/>.
/// Segments travel as chunks of at most <see cref="IRingTransport.MaxChunkElements"/> floats and
/// the transfer is pipelined per chunk: a sending loop and a receiving loop run concurrently, and a
/// chunk is forwarded at the next step as soon as it has been received and merged, without waiting
/// for the rest of its segment.
/// <para>
/// With <see cref="WireCompression.Fp16"/> or <see cref="WireCompression.Bf16"/> every chunk travels
/// as 16-bit values packed two per float slot (<see cref="HalfCodec"/>), so the transport carries half
/// the bytes; a chunk then holds up to 2 × <see cref="IRingTransport.MaxChunkElements"/> values and
/// still fits the transport's limit. The sum stays float32: a received chunk is decoded and added to
/// the float32 partial sum, which is encoded again only to be sent, so each hop rounds once and the
/// error does not compound. At the last reduce-scatter step the owner of a segment rounds its own
/// float32 sum as the others will decode it; the all-gather then forwards those same bytes, so all
/// peers still end bitwise equal.
/// </para>
/// </summary>
internal static class RingAllReduce
{
    /// <summary>
    /// Replaces <paramref name="buffer"/> with the element-wise sum of the buffers of all ring peers.
    /// Every peer must call this with the same length and the same generation, step, bucket and lane.
    /// All peers end with bitwise identical buffers: each segment is summed once, by its owner, and copied
    /// from there.
    /// </summary>
    /// <param name="key">The call's generation, step, bucket and lane (its ring step and chunk are the ring's own).</param>
    public static Task RunAsync(IRingTransport transport, Memory<float> buffer, ChunkKey key, CancellationToken cancellationToken,
        WireCompression compression = WireCompression.None) =>
        RunAsync(transport, buffer, new RingCall(key, compression, RingPhases.Both), cancellationToken);

    /// <summary>
    /// Runs the phases <paramref name="call"/> names of the ring all-reduce on <paramref name="buffer"/>. The reduce-scatter alone
    /// leaves this peer's <see cref="RingSchedule.OwnedSegment"/> holding the sum; the all-gather alone starts from every peer's
    /// owned segment and copies them to all. Run one after the other with the same key, they are the whole all-reduce.
    /// </summary>
    public static async Task RunAsync(IRingTransport transport, Memory<float> buffer, RingCall call, CancellationToken cancellationToken)
    {
        var compression = call.Compression;
        ArgumentNullException.ThrowIfNull(transport);
        if (!Enum.IsDefined(compression))
        {
            throw new ArgumentOutOfRangeException(nameof(compression), compression, "Unknown wire compression.");
        }

        int peerCount = transport.PeerCount;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(peerCount, $"{nameof(transport)}.{nameof(transport.PeerCount)}");
        cancellationToken.ThrowIfCancellationRequested();
        if (peerCount == 1)
        {
            return;
        }

        int maxChunk = transport.MaxChunkElements;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxChunk, $"{nameof(transport)}.{nameof(transport.MaxChunkElements)}");

        // Compressed chunks hold two values per float slot the transport carries.
        int chunkValues = compression == WireCompression.None ? maxChunk : (int)Math.Min(int.MaxValue, 2L * maxChunk);
        var run = new Run(transport, buffer, call, chunkValues);
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

    /// <summary>State of one all-reduce (or one of its phases) on one peer.</summary>
    private sealed class Run
    {
        private readonly IRingTransport transport;
        private readonly Memory<float> buffer;
        private readonly ChunkKey baseKey;
        private readonly int maxChunk;
        private readonly int firstStep;
        private readonly int endStep;
        private readonly WireCompression compression;
        private readonly RingSchedule schedule;
        private readonly (int Offset, int Count)[] segments;

        // Chunks are numbered consecutively over all steps: firstSent[k] is the running number of
        // the first chunk sent at step k (likewise for received), so "chunk c of step k is done"
        // becomes "the counter has passed firstX[k] + c".
        private readonly long[] firstSent;
        private readonly long[] firstReceived;
        private readonly ProgressCounter sent = new();
        private readonly ProgressCounter received = new();

        public Run(IRingTransport transport, Memory<float> buffer, RingCall call, int maxChunk)
        {
            compression = call.Compression;
            this.transport = transport;
            this.buffer = buffer;
            baseKey = call.Key;
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

            int rsSteps = schedule.ReduceScatterStepCount;
            firstStep = call.Phases == RingPhases.AllGather ? rsSteps : 0;
            endStep = call.Phases == RingPhases.ReduceScatter ? rsSteps : stepCount;
            if (firstStep > 0)
            {
                // The reduce-scatter ran in an earlier call: its chunks count as sent and received, so the
                // all-gather's waits on them are already met.
                sent.Advance(firstSent[firstStep]);
                received.Advance(firstReceived[firstStep]);
            }
        }

        private IEnumerable<RingStep> Steps => schedule.Steps.Take(endStep).Skip(firstStep);

        private ChunkKey KeyOf(int ringStep, int chunk) => baseKey with { RingStep = ringStep, Chunk = chunk };

        public async Task SendAllAsync(CancellationToken cancellationToken)
        {
            foreach (var ringStep in Steps)
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

                    var key = KeyOf(k, c);
                    var chunk = ChunkOf(ringStep.SendSegment, c);
                    if (compression == WireCompression.None)
                    {
                        await transport.SendAsync(schedule.RightNeighbour, key, chunk, cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        // The transport may keep the data only until the send completes, so the encoded
                        // copy goes back to the pool right after.
                        int packedLength = HalfCodec.PackedLength(chunk.Length);
                        float[] packed = ArrayPool<float>.Shared.Rent(packedLength);
                        try
                        {
                            HalfCodec.Encode(compression, chunk.Span, packed.AsSpan(0, packedLength));
                            await transport.SendAsync(schedule.RightNeighbour, key, packed.AsMemory(0, packedLength), cancellationToken)
                                .ConfigureAwait(false);
                        }
                        finally
                        {
                            ArrayPool<float>.Shared.Return(packed);
                        }
                    }

                    sent.Advance();
                }
            }
        }

        public async Task ReceiveAllAsync(CancellationToken cancellationToken)
        {
            int reduceScatterSteps = schedule.ReduceScatterStepCount;
            foreach (var ringStep in Steps)
            {
                int k = ringStep.Index;
                int chunks = ChunkCount(ringStep.ReceiveSegment);
                for (int c = 0; c < chunks; c++)
                {
                    var key = KeyOf(k, c);
                    var incoming = await transport.ReceiveAsync(schedule.LeftNeighbour, key, cancellationToken).ConfigureAwait(false);
                    try
                    {
                        var target = ChunkOf(ringStep.ReceiveSegment, c);
                        int expected = compression == WireCompression.None ? target.Length : HalfCodec.PackedLength(target.Length);
                        if (incoming.Length != expected)
                        {
                            throw new InvalidOperationException(
                                $"Ring chunk {key} from peer {schedule.LeftNeighbour} has {incoming.Length} elements, expected {expected}; " +
                                "peers disagree on the buffer length or the compression.");
                        }

                        // All-gather step t overwrites the segment this peer sent at reduce-scatter step t;
                        // that send must be finished before the buffer under it changes.
                        int overwrittenSendStep = k - reduceScatterSteps;
                        if (overwrittenSendStep >= 0)
                        {
                            await sent.WaitForAsync(firstSent[overwrittenSendStep] + c + 1, cancellationToken).ConfigureAwait(false);
                        }

                        if (compression == WireCompression.None)
                        {
                            if (ringStep.Op == RingOp.Reduce)
                            {
                                Kernels.Add(target.Span, incoming.Span);
                            }
                            else
                            {
                                incoming.Span.CopyTo(target.Span);
                            }
                        }
                        else if (ringStep.Op == RingOp.Reduce)
                        {
                            HalfCodec.DecodeAdd(compression, incoming.Span, target.Span);
                            if (k == reduceScatterSteps - 1)
                            {
                                // This peer owns the finished sum of this segment; the others will hold it as
                                // decoded from the wire, so round this copy the same way.
                                HalfCodec.Round(compression, target.Span);
                            }
                        }
                        else
                        {
                            HalfCodec.Decode(compression, incoming.Span, target.Span);
                        }
                    }
                    finally
                    {
                        // Merged (or failed): the transport may reuse the chunk's memory from here on.
                        transport.Release(incoming);
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

        public void Advance(long by = 1)
        {
            TaskCompletionSource? release = null;
            lock (gate)
            {
                value += by;
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
