namespace ActorTrain.Sync.Transport;

/// <summary>
/// Thread-safe rendezvous between chunks arriving from peers and the receives waiting for them,
/// matched on (sending peer, <see cref="ChunkKey"/>). Either side may come first. A transport keeps
/// one mailbox per peer and delivers whatever the network hands it; the mailbox drops duplicates and
/// chunks of generations the world has already left.
/// </summary>
public sealed class ChunkMailbox
{
    private readonly Lock gate = new();
    private readonly Dictionary<Slot, ReadOnlyMemory<float>> pending = new();
    private readonly Dictionary<Slot, TaskCompletionSource<ReadOnlyMemory<float>>> waiters = new();
    private long lowestLiveGeneration = long.MinValue;
    private long duplicatesDropped;
    private long staleDropped;

    /// <summary>Chunks refused because the same key from the same peer was already waiting to be taken.</summary>
    public long DuplicatesDropped
    {
        get { lock (gate) { return duplicatesDropped; } }
    }

    /// <summary>Chunks refused because their generation is older than <see cref="LowestLiveGeneration"/>.</summary>
    public long StaleDropped
    {
        get { lock (gate) { return staleDropped; } }
    }

    /// <summary>Chunks delivered and not yet received.</summary>
    public int PendingCount
    {
        get { lock (gate) { return pending.Count; } }
    }

    /// <summary>Oldest generation still accepted (set by <see cref="DropGenerationsBefore"/>).</summary>
    public long LowestLiveGeneration
    {
        get { lock (gate) { return lowestLiveGeneration; } }
    }

    /// <summary>
    /// Hands a chunk to its receive, or keeps it until that receive comes. Returns false (and counts
    /// the chunk) when it is a duplicate of one still pending or belongs to a dropped generation.
    /// The mailbox keeps <paramref name="data"/> as given: the caller must not reuse its memory.
    /// </summary>
    public bool Deliver(int fromPeer, ChunkKey key, ReadOnlyMemory<float> data)
    {
        var slot = new Slot(fromPeer, key);
        TaskCompletionSource<ReadOnlyMemory<float>>? waiter;
        lock (gate)
        {
            if (key.Generation < lowestLiveGeneration)
            {
                staleDropped++;
                return false;
            }

            if (!waiters.Remove(slot, out waiter))
            {
                if (!pending.TryAdd(slot, data))
                {
                    duplicatesDropped++;
                    return false;
                }

                return true;
            }
        }

        // Completed outside the lock; the receiver's continuation runs asynchronously anyway.
        waiter.TrySetResult(data);
        return true;
    }

    /// <summary>
    /// Returns the chunk <paramref name="key"/> from <paramref name="fromPeer"/>, waiting for it if it
    /// has not arrived. Cancelling removes the wait; a receive whose generation is dropped (before or
    /// while waiting) fails with <see cref="OperationCanceledException"/>.
    /// </summary>
    public ValueTask<ReadOnlyMemory<float>> ReceiveAsync(int fromPeer, ChunkKey key, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<ReadOnlyMemory<float>>(cancellationToken);
        }

        var slot = new Slot(fromPeer, key);
        TaskCompletionSource<ReadOnlyMemory<float>> waiter;
        lock (gate)
        {
            if (key.Generation < lowestLiveGeneration)
            {
                return ValueTask.FromException<ReadOnlyMemory<float>>(StaleGeneration(key.Generation, lowestLiveGeneration));
            }

            if (pending.Remove(slot, out var data))
            {
                return new ValueTask<ReadOnlyMemory<float>>(data);
            }

            if (waiters.ContainsKey(slot))
            {
                throw new InvalidOperationException($"A receive for chunk {key} from peer {fromPeer} is already waiting.");
            }

            waiter = new TaskCompletionSource<ReadOnlyMemory<float>>(TaskCreationOptions.RunContinuationsAsynchronously);
            waiters.Add(slot, waiter);
        }

        return cancellationToken.CanBeCanceled
            ? WaitCancellableAsync(slot, waiter, cancellationToken)
            : new ValueTask<ReadOnlyMemory<float>>(waiter.Task);
    }

    /// <summary>
    /// Stops accepting generations older than <paramref name="generation"/>: their pending chunks are
    /// discarded and their waiting receives fail with <see cref="OperationCanceledException"/>.
    /// Returns the number of pending chunks discarded.
    /// </summary>
    public int DropGenerationsBefore(long generation)
    {
        var abandoned = new List<TaskCompletionSource<ReadOnlyMemory<float>>>();
        int dropped = 0;
        lock (gate)
        {
            lowestLiveGeneration = Math.Max(lowestLiveGeneration, generation);
            foreach (var slot in pending.Keys.Where(s => s.Key.Generation < generation).ToList())
            {
                pending.Remove(slot);
                dropped++;
            }

            foreach (var slot in waiters.Keys.Where(s => s.Key.Generation < generation).ToList())
            {
                waiters.Remove(slot, out var waiter);
                abandoned.Add(waiter!);
            }
        }

        foreach (var waiter in abandoned)
        {
            waiter.TrySetException(new OperationCanceledException(
                $"Receive abandoned: generation {generation} replaced the generation it was waiting in."));
        }

        return dropped;
    }

    private static OperationCanceledException StaleGeneration(long generation, long lowest) =>
        new($"Generation {generation} is no longer live (oldest live generation: {lowest}).");

    private async ValueTask<ReadOnlyMemory<float>> WaitCancellableAsync(
        Slot slot, TaskCompletionSource<ReadOnlyMemory<float>> waiter, CancellationToken cancellationToken)
    {
        using var registration = cancellationToken.Register(() =>
        {
            bool removed;
            lock (gate)
            {
                // Only remove our own waiter: a delivery may already have taken it out.
                removed = waiters.TryGetValue(slot, out var current) && ReferenceEquals(current, waiter) && waiters.Remove(slot);
            }

            if (removed)
            {
                waiter.TrySetCanceled(cancellationToken);
            }
        });
        return await waiter.Task.ConfigureAwait(false);
    }

    private readonly record struct Slot(int FromPeer, ChunkKey Key);
}
