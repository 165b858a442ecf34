using System.Numerics.Tensors;

namespace ActorTrain.Sync.Collectives;

/// <summary>
/// Intra-node collective for CPU trainers in one process: each trainer calls from its own thread
/// with its own buffer, the participants meet at a <see cref="Barrier"/> and read each other's
/// buffers directly. Every slice is summed by one trainer in local-rank order, so results are
/// bitwise reproducible and identical on all trainers.
/// </summary>
internal sealed class SharedMemoryCollective : IIntraNodeCollective
{
    // Summing one block of all buffers at a time keeps the partial sum in L1 instead of streaming
    // the whole slice through memory once per participant.
    private const int BlockElements = 2048;

    private readonly Barrier? barrier;
    private readonly Memory<float>[] registered;

    // Written only by the barrier's post-phase action, which runs while every participant is
    // parked, so all participants of a phase read the same verdict.
    private string? lengthMismatch;

    /// <summary>Creates the collective for <paramref name="localSize"/> trainers.</summary>
    public SharedMemoryCollective(int localSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(localSize);
        LocalSize = localSize;
        registered = new Memory<float>[localSize];
        if (localSize > 1)
        {
            barrier = new Barrier(localSize, _ => lengthMismatch = DescribeLengthMismatch());
        }
    }

    /// <inheritdoc />
    public string Name => "shared-memory";

    /// <inheritdoc />
    public int LocalSize { get; }

    /// <inheritdoc />
    public void ReduceScatter(int localRank, Memory<float> buffer, CancellationToken cancellationToken)
    {
        if (!Begin(localRank, buffer, cancellationToken))
        {
            return;
        }

        ReduceOwnSlice(localRank);
        End(localRank, cancellationToken);
    }

    /// <inheritdoc />
    public void AllGather(int localRank, Memory<float> buffer, CancellationToken cancellationToken)
    {
        if (!Begin(localRank, buffer, cancellationToken))
        {
            return;
        }

        GatherOtherSlices(localRank);
        End(localRank, cancellationToken);
    }

    /// <inheritdoc />
    public void AllReduce(int localRank, Memory<float> buffer, CancellationToken cancellationToken)
    {
        if (!Begin(localRank, buffer, cancellationToken))
        {
            return;
        }

        ReduceOwnSlice(localRank);

        // Every slice must be fully reduced before anyone copies it; one barrier stands for the
        // reduce-scatter's closing and the all-gather's opening barrier.
        barrier!.SignalAndWait(cancellationToken);
        GatherOtherSlices(localRank);
        End(localRank, cancellationToken);
    }

    /// <inheritdoc />
    public void Broadcast(int localRank, int rootLocalRank, Memory<float> buffer, CancellationToken cancellationToken)
    {
        if ((uint)rootLocalRank >= (uint)LocalSize)
        {
            throw new ArgumentOutOfRangeException(nameof(rootLocalRank), rootLocalRank, $"Root local rank must be in 0..{LocalSize - 1}.");
        }

        if (!Begin(localRank, buffer, cancellationToken))
        {
            return;
        }

        if (localRank != rootLocalRank)
        {
            registered[rootLocalRank].Span.CopyTo(registered[localRank].Span);
        }

        End(localRank, cancellationToken);
    }

    /// <inheritdoc />
    public void Dispose() => barrier?.Dispose();

    /// <summary>Registers the buffer and waits for all participants; false when there is nothing to do (one trainer).</summary>
    private bool Begin(int localRank, Memory<float> buffer, CancellationToken cancellationToken)
    {
        if ((uint)localRank >= (uint)LocalSize)
        {
            throw new ArgumentOutOfRangeException(nameof(localRank), localRank, $"Local rank must be in 0..{LocalSize - 1}.");
        }

        if (barrier is null)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return false;
        }

        registered[localRank] = buffer;
        barrier.SignalAndWait(cancellationToken);

        // Every participant sees the same verdict and throws before touching any buffer, so none is
        // left waiting at a later barrier.
        if (lengthMismatch is { } mismatch)
        {
            registered[localRank] = default;
            throw new InvalidOperationException(mismatch);
        }

        return true;
    }

    /// <summary>Waits until nobody reads the buffers any more, then lets go of this trainer's buffer.</summary>
    private void End(int localRank, CancellationToken cancellationToken)
    {
        barrier!.SignalAndWait(cancellationToken);
        registered[localRank] = default;
    }

    private void ReduceOwnSlice(int localRank)
    {
        var (offset, count) = Partition.Slice(registered[localRank].Length, LocalSize, localRank);
        var own = registered[localRank].Span.Slice(offset, count);
        Span<float> sum = stackalloc float[BlockElements];
        for (int start = 0; start < count; start += BlockElements)
        {
            int length = Math.Min(BlockElements, count - start);
            var block = sum[..length];

            // Always ((b0 + b1) + b2) + ...: the same association whichever rank does the work.
            TensorPrimitives.Add(Block(0, offset + start, length), Block(1, offset + start, length), block);
            for (int rank = 2; rank < LocalSize; rank++)
            {
                TensorPrimitives.Add(block, Block(rank, offset + start, length), block);
            }

            block.CopyTo(own.Slice(start, length));
        }
    }

    private void GatherOtherSlices(int localRank)
    {
        var own = registered[localRank].Span;
        for (int rank = 0; rank < LocalSize; rank++)
        {
            if (rank == localRank)
            {
                continue;
            }

            var (offset, count) = Partition.Slice(own.Length, LocalSize, rank);
            Block(rank, offset, count).CopyTo(own.Slice(offset, count));
        }
    }

    private ReadOnlySpan<float> Block(int rank, int offset, int length) => registered[rank].Span.Slice(offset, length);

    private string? DescribeLengthMismatch()
    {
        int expected = registered[0].Length;
        if (registered.All(b => b.Length == expected))
        {
            return null;
        }

        var lengths = string.Join(", ", registered.Select((b, rank) => $"local rank {rank}: {b.Length}"));
        return $"{Name} collective: trainers passed buffers of different lengths ({lengths}); all must be equal.";
    }
}
