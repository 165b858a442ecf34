namespace ActorTrain.Sync.Transport;

/// <summary>
/// Thread-safe rendezvous between chunks arriving from peers and the receives waiting for them,
/// matched on (sending peer, <see cref="ChunkKey"/>). Either side may come first. A transport keeps
/// one mailbox per peer and delivers whatever the network hands it; the mailbox drops duplicates and
/// chunks of generations the world has already left.
/// <para>
/// A mailbox made with a discard callback hands every chunk it accepted for delivery but will never
/// give to a receive (a duplicate, a stale or dropped generation, one still pending or arriving when
/// the mailbox is closed) to that callback exactly once, outside its lock, so a transport can take
/// pooled memory back. A chunk given to a receive belongs to the receiver.
/// </para>
/// <para>
/// Chunks held for a receive that has not come yet are bounded per sending peer
/// (<see cref="MaxPendingBytesPerPeer"/>): a chunk that would take a peer's held bytes beyond it is
/// refused and counted, so a peer (or a stranger posing as one) cannot fill the memory with chunks
/// of keys no reduction asks for.
/// </para>
/// </summary>
internal sealed class ChunkMailbox
{
    private readonly Lock gate = new();
    private readonly Action<ReadOnlyMemory<float>>? discard;
    private readonly Dictionary<Slot, ReadOnlyMemory<float>> pending = new();
    private readonly Dictionary<Slot, TaskCompletionSource<ReadOnlyMemory<float>>> waiters = new();
    private readonly Dictionary<int, long> pendingBytes = new();
    private long lowestLiveGeneration = long.MinValue;
    private long duplicatesDropped;
    private long staleDropped;
    private long limitDropped;
    private bool closed;

    /// <summary>The bound of a mailbox made without one: no bound.</summary>
    public const long Unbounded = long.MaxValue;

    /// <summary>A mailbox whose dropped chunks are left to the garbage collector.</summary>
    public ChunkMailbox(long maxPendingBytesPerPeer = Unbounded)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPendingBytesPerPeer);
        MaxPendingBytesPerPeer = maxPendingBytesPerPeer;
    }

    /// <summary>A mailbox that hands every chunk it drops to <paramref name="discard"/>.</summary>
    public ChunkMailbox(Action<ReadOnlyMemory<float>> discard, long maxPendingBytesPerPeer = Unbounded)
        : this(maxPendingBytesPerPeer)
    {
        ArgumentNullException.ThrowIfNull(discard);
        this.discard = discard;
    }

    /// <summary>Most bytes of chunks from one peer held for receives that have not come yet.</summary>
    public long MaxPendingBytesPerPeer { get; }

    /// <summary>Chunks refused because their peer's held bytes would have exceeded <see cref="MaxPendingBytesPerPeer"/>.</summary>
    public long LimitDropped
    {
        get { lock (gate) { return limitDropped; } }
    }

    /// <summary>Bytes of chunks from <paramref name="fromPeer"/> delivered and not yet received.</summary>
    public long PendingBytes(int fromPeer)
    {
        lock (gate) { return pendingBytes.GetValueOrDefault(fromPeer); }
    }

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
    /// the chunk) when it is a duplicate of one still pending, belongs to a dropped generation, or
    /// would take its peer's held bytes beyond <see cref="MaxPendingBytesPerPeer"/>.
    /// The mailbox keeps <paramref name="data"/> as given: the caller must not reuse its memory. A
    /// closed mailbox drops every chunk (returning false, counting none).
    /// </summary>
    public bool Deliver(int fromPeer, ChunkKey key, ReadOnlyMemory<float> data)
    {
        var slot = new Slot(fromPeer, key);
        TaskCompletionSource<ReadOnlyMemory<float>>? waiter = null;
        lock (gate)
        {
            if (closed)
            {
                // Dropped without counting: nothing will ever receive again.
            }
            else if (key.Generation < lowestLiveGeneration)
            {
                staleDropped++;
            }
            else if (waiters.Remove(slot, out var waiting))
            {
                waiter = waiting;
            }
            else if (pending.ContainsKey(slot))
            {
                duplicatesDropped++;
            }
            else if (pendingBytes.GetValueOrDefault(fromPeer) + Bytes(data) > MaxPendingBytesPerPeer)
            {
                limitDropped++;
            }
            else
            {
                pending.Add(slot, data);
                pendingBytes[fromPeer] = pendingBytes.GetValueOrDefault(fromPeer) + Bytes(data);
                return true;
            }
        }

        if (waiter is null)
        {
            discard?.Invoke(data);
            return false;
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
    /// <summary>Takes the chunk with <paramref name="key"/> from <paramref name="fromPeer"/> if it has arrived; never waits.</summary>
    public bool TryTake(int fromPeer, ChunkKey key, out ReadOnlyMemory<float> data)
    {
        lock (gate)
        {
            if (!closed && key.Generation >= lowestLiveGeneration && pending.Remove(new Slot(fromPeer, key), out data))
            {
                Released(fromPeer, data);
                return true;
            }
        }

        data = default;
        return false;
    }

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
            if (closed)
            {
                return ValueTask.FromException<ReadOnlyMemory<float>>(Closed());
            }

            if (key.Generation < lowestLiveGeneration)
            {
                return ValueTask.FromException<ReadOnlyMemory<float>>(StaleGeneration(key.Generation, lowestLiveGeneration));
            }

            if (pending.Remove(slot, out var data))
            {
                Released(fromPeer, data);
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
        var discarded = new List<ReadOnlyMemory<float>>();
        lock (gate)
        {
            lowestLiveGeneration = Math.Max(lowestLiveGeneration, generation);
            foreach (var slot in pending.Keys.Where(s => s.Key.Generation < generation).ToList())
            {
                pending.Remove(slot, out var data);
                Released(slot.FromPeer, data);
                discarded.Add(data);
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

        Discard(discarded);
        return discarded.Count;
    }

    /// <summary>
    /// Ends the mailbox: pending chunks are discarded, waiting receives fail with
    /// <see cref="ObjectDisposedException"/>, and from now on every delivery is discarded and every
    /// receive fails the same way. Calling it again does nothing.
    /// </summary>
    public void Close()
    {
        List<TaskCompletionSource<ReadOnlyMemory<float>>> abandoned;
        List<ReadOnlyMemory<float>> discarded;
        lock (gate)
        {
            if (closed)
            {
                return;
            }

            closed = true;
            discarded = [.. pending.Values];
            pending.Clear();
            pendingBytes.Clear();
            abandoned = [.. waiters.Values];
            waiters.Clear();
        }

        foreach (var waiter in abandoned)
        {
            waiter.TrySetException(Closed());
        }

        Discard(discarded);
    }

    private static long Bytes(ReadOnlyMemory<float> data) => (long)data.Length * sizeof(float);

    /// <summary>A held chunk leaves the mailbox (call under the lock).</summary>
    private void Released(int fromPeer, ReadOnlyMemory<float> data)
    {
        var left = pendingBytes.GetValueOrDefault(fromPeer) - Bytes(data);
        if (left > 0)
        {
            pendingBytes[fromPeer] = left;
        }
        else
        {
            pendingBytes.Remove(fromPeer);
        }
    }

    private void Discard(List<ReadOnlyMemory<float>> chunks)
    {
        if (discard is null)
        {
            return;
        }

        foreach (var chunk in chunks)
        {
            discard(chunk);
        }
    }

    private static ObjectDisposedException Closed() => new(nameof(ChunkMailbox), "The mailbox is closed; no chunk will arrive.");

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
