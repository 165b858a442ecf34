namespace ActorTrain.TrainerActors.Data;

/// <summary>
/// Splits a dataset among the ranks of a data-parallel job so that the world may change in the
/// middle of an epoch. Every epoch has one shuffled order of the whole dataset, the same on every
/// rank; the epoch is consumed front to back, one global batch of worldSize × batchSize samples
/// per step, rank r taking the r-th slice of batchSize. The epoch's position is one number (the
/// samples done), so a new world (ranks lost or joined) goes on from it with its own size: no
/// sample is trained on twice in an epoch and the shards of a step are disjoint. An epoch ends
/// when less than a full global batch is left (those samples are dropped, like
/// <c>drop_last</c>).
/// </summary>
/// <remarks>
/// The permutation is a Fisher–Yates shuffle driven by the SplitMix64 generator; the generator
/// state starts at <c>Mix64(((ulong)(uint)seed &lt;&lt; 32) | (uint)epoch)</c>, so every rank computes
/// the same permutation from (seed, epoch) alone, on any platform and .NET version. (System.Random
/// is not used: its algorithm is not a documented contract.)
/// </remarks>
internal sealed class DistributedSampler
{
    public DistributedSampler(int datasetSize, int seed, bool shuffle = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(datasetSize);
        DatasetSize = datasetSize;
        Seed = seed;
        Shuffle = shuffle;
    }

    public int DatasetSize { get; }

    public int Seed { get; }

    public bool Shuffle { get; }

    /// <summary>The epoch's order of the whole dataset, the same on every rank.</summary>
    public int[] Order(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        return Shuffle ? Permutation(DatasetSize, Seed, epoch) : Identity(DatasetSize);
    }

    /// <summary>Full global batches left in the epoch after <paramref name="samplesDone"/> samples.</summary>
    public int StepsLeft(long samplesDone, int worldSize, int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(samplesDone);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(worldSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        var left = DatasetSize - samplesDone;
        return left <= 0 ? 0 : (int)(left / ((long)worldSize * batchSize));
    }

    /// <summary>
    /// Rank <paramref name="rank"/>'s samples of the step that starts after
    /// <paramref name="samplesDone"/> samples of <paramref name="order"/>.
    /// </summary>
    public static ReadOnlySpan<int> Batch(int[] order, long samplesDone, int worldSize, int rank, int batchSize)
    {
        if (rank < 0 || rank >= worldSize)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"The rank must be in 0..{worldSize - 1} for a world size of {worldSize}.");
        var start = samplesDone + (long)rank * batchSize;
        if (samplesDone < 0 || samplesDone + (long)worldSize * batchSize > order.Length)
            throw new ArgumentOutOfRangeException(nameof(samplesDone), samplesDone,
                $"A step of {worldSize} x {batchSize} samples after {samplesDone} does not fit an epoch of {order.Length}.");
        return order.AsSpan((int)start, batchSize);
    }

    /// <summary>
    /// The deterministic permutation of 0..<paramref name="count"/>−1 for (seed, epoch) described in
    /// the class remarks (Fisher–Yates, from the last position down, with unbiased SplitMix64 draws).
    /// </summary>
    public static int[] Permutation(int count, int seed, int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        int[] order = Identity(count);
        var rng = new SplitMix64(SplitMix64.Mix(((ulong)(uint)seed << 32) | (uint)epoch));
        for (int i = count - 1; i > 0; i--)
        {
            int j = (int)rng.NextBelow((ulong)i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }

        return order;
    }

    private static int[] Identity(int count)
    {
        var order = new int[count];
        for (int i = 0; i < count; i++)
        {
            order[i] = i;
        }

        return order;
    }

    /// <summary>
    /// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014;
    /// the constants of Vigna's public-domain reference implementation): the state advances by
    /// 0x9E3779B97F4A7C15 and each output is the state passed through <see cref="Mix"/>.
    /// </summary>
    private struct SplitMix64(ulong state)
    {
        private ulong _state = state;

        public static ulong Mix(ulong z)
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        public ulong Next()
        {
            _state += 0x9E3779B97F4A7C15UL;
            return Mix(_state);
        }

        /// <summary>Uniform in [0, bound) by rejection: draws below 2^64 mod bound are redrawn.</summary>
        public ulong NextBelow(ulong bound)
        {
            ulong threshold = (0UL - bound) % bound;
            while (true)
            {
                ulong r = Next();
                if (r >= threshold)
                {
                    return r % bound;
                }
            }
        }
    }
}
