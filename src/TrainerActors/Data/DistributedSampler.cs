namespace ActorTrain.TrainerActors.Data;

/// <summary>
/// Splits a dataset among the ranks of a data-parallel job, like PyTorch's <c>DistributedSampler</c>.
/// </summary>
/// <remarks>
/// <para>
/// For each epoch the indices 0..datasetSize−1 are permuted (when <c>shuffle</c> is set) by a
/// Fisher–Yates shuffle driven by the SplitMix64 generator; the generator state starts at
/// <c>Mix64(((ulong)(uint)seed &lt;&lt; 32) | (uint)epoch)</c>, so every rank computes the same
/// permutation from (seed, epoch) alone, on any platform and .NET version. (System.Random is not used:
/// its algorithm is not a documented contract.) The permutation is then padded, by wrapping around
/// from its start, to <see cref="TotalSize"/> = <see cref="NumSamples"/> × worldSize, and rank r takes
/// positions r, r + worldSize, r + 2·worldSize, …
/// </para>
/// <para>
/// Every rank therefore gets exactly <see cref="NumSamples"/> = ⌈datasetSize / worldSize⌉ indices;
/// the shards are disjoint and together cover the dataset when datasetSize is divisible by worldSize
/// (otherwise a few indices appear twice across ranks).
/// </para>
/// </remarks>
public sealed class DistributedSampler
{
    public DistributedSampler(int datasetSize, int worldSize, int rank, int seed, bool shuffle = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(datasetSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(worldSize);
        if (rank < 0 || rank >= worldSize)
        {
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"The rank must be in 0..{worldSize - 1} for a world size of {worldSize}.");
        }

        DatasetSize = datasetSize;
        WorldSize = worldSize;
        Rank = rank;
        Seed = seed;
        Shuffle = shuffle;
        NumSamples = (int)(((long)datasetSize + worldSize - 1) / worldSize);
    }

    public int DatasetSize { get; }

    public int WorldSize { get; }

    public int Rank { get; }

    public int Seed { get; }

    public bool Shuffle { get; }

    /// <summary>Indices each rank gets per epoch: ⌈DatasetSize / WorldSize⌉.</summary>
    public int NumSamples { get; }

    /// <summary>Length of the padded index list shared out among the ranks: NumSamples × WorldSize.</summary>
    public long TotalSize => (long)NumSamples * WorldSize;

    /// <summary>This rank's indices for <paramref name="epoch"/> (length <see cref="NumSamples"/>).</summary>
    public int[] Indices(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        int[] order = Shuffle ? Permutation(DatasetSize, Seed, epoch) : Identity(DatasetSize);
        var mine = new int[NumSamples];
        for (int i = 0; i < mine.Length; i++)
        {
            long position = Rank + ((long)i * WorldSize); // position in the padded list
            mine[i] = order[(int)(position % DatasetSize)]; // padding wraps around from the start
        }

        return mine;
    }

    /// <summary>
    /// Full batches of <paramref name="batchSize"/> per epoch on every rank: NumSamples / batchSize
    /// (an incomplete last batch is dropped, so all ranks take the same number of equal-size steps).
    /// </summary>
    public int BatchesPerEpoch(int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return NumSamples / batchSize;
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
