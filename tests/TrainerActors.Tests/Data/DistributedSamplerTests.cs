using ActorTrain.TrainerActors.Data;

namespace ActorTrain.TrainerActors.Tests.Data;

public sealed class DistributedSamplerTests
{
    private static DistributedSampler[] Ranks(int datasetSize, int worldSize, int seed = 42, bool shuffle = true) =>
        Enumerable.Range(0, worldSize).Select(r => new DistributedSampler(datasetSize, worldSize, r, seed, shuffle)).ToArray();

    public static TheoryData<int> WorldSizes => new() { 1, 2, 3, 4, 5 };

    [Theory]
    [MemberData(nameof(WorldSizes))]
    public void ShardsAreDisjointAndCoverDivisibleDatasets(int worldSize)
    {
        int datasetSize = 60 * worldSize;
        DistributedSampler[] ranks = Ranks(datasetSize, worldSize);

        foreach (int epoch in new[] { 0, 1, 7 })
        {
            int[][] shards = ranks.Select(s => s.Indices(epoch)).ToArray();
            Assert.All(shards, s => Assert.Equal(datasetSize / worldSize, s.Length));

            int[] all = shards.SelectMany(s => s).ToArray();
            Assert.Equal(datasetSize, all.Length);
            Assert.Equal(Enumerable.Range(0, datasetSize), all.Order());
        }
    }

    [Theory]
    [InlineData(10, 3)]
    [InlineData(9001, 4)]
    [InlineData(7, 5)]
    [InlineData(3, 5)]
    [InlineData(1, 2)]
    public void ShardsHaveEqualLengthOnNonDivisibleDatasets(int datasetSize, int worldSize)
    {
        DistributedSampler[] ranks = Ranks(datasetSize, worldSize);
        int expected = (datasetSize + worldSize - 1) / worldSize;

        int[][] shards = ranks.Select(s => s.Indices(3)).ToArray();

        Assert.All(ranks, s => Assert.Equal(expected, s.NumSamples));
        Assert.All(shards, s => Assert.Equal(expected, s.Length));
        int[] all = shards.SelectMany(s => s).ToArray();
        Assert.Equal(expected * worldSize, all.Length);
        Assert.All(all, i => Assert.InRange(i, 0, datasetSize - 1));
        Assert.Equal(Enumerable.Range(0, datasetSize), all.Distinct().Order()); // all covered
    }

    [Fact]
    public void PaddingWrapsAroundFromTheStartOfThePermutation()
    {
        // 10 indices, 4 ranks: padded list = perm[0..9] + perm[0..1]; rank r takes r, r+4, r+8.
        int[] perm = DistributedSampler.Permutation(10, 5, 2);
        int[] padded = [.. perm, perm[0], perm[1]];

        for (int rank = 0; rank < 4; rank++)
        {
            int[] expected = [padded[rank], padded[rank + 4], padded[rank + 8]];
            Assert.Equal(expected, new DistributedSampler(10, 4, rank, 5).Indices(2));
        }
    }

    [Fact]
    public void OrderChangesEveryEpoch()
    {
        var sampler = new DistributedSampler(1000, 2, 1, seed: 7);
        int[][] epochs = Enumerable.Range(0, 5).Select(sampler.Indices).ToArray();

        for (int a = 0; a < epochs.Length; a++)
        {
            for (int b = a + 1; b < epochs.Length; b++)
            {
                Assert.NotEqual(epochs[a], epochs[b]);
            }
        }
    }

    [Fact]
    public void SameSeedAndEpochGiveSameOrder()
    {
        var a = new DistributedSampler(9000, 3, 2, seed: 123);
        var b = new DistributedSampler(9000, 3, 2, seed: 123);

        Assert.Equal(a.Indices(4), b.Indices(4));
        Assert.Equal(a.Indices(4), a.Indices(4));
    }

    [Fact]
    public void DifferentSeedsGiveDifferentOrders()
    {
        var a = new DistributedSampler(9000, 3, 0, seed: 1);
        var b = new DistributedSampler(9000, 3, 0, seed: 2);

        Assert.NotEqual(a.Indices(0), b.Indices(0));
    }

    [Fact]
    public void ShuffleIsActuallyShuffled()
    {
        int[] order = new DistributedSampler(1000, 1, 0, seed: 0).Indices(0);

        Assert.NotEqual(Enumerable.Range(0, 1000), order);
        Assert.Equal(Enumerable.Range(0, 1000), order.Order());
        // A uniform permutation has about one fixed point; 1000 elements with > 20 would be a broken shuffle.
        Assert.True(order.Where((v, i) => v == i).Count() < 20);
    }

    [Fact]
    public void PermutationMatchesTheDocumentedAlgorithm()
    {
        // Pins the documented algorithm (SplitMix64 seeded with Mix64(seed << 32 | epoch), Fisher–Yates
        // from the last position down, rejection-sampled draws) so that a change in it is noticed: every
        // rank of a job, whatever its build, must compute the same order. The expected values come from
        // an independent Python implementation of the algorithm, whose SplitMix64 reproduces the
        // reference outputs for seed 1234567 (6457827717110365317, 3203168211198807973, ...).
        Assert.Equal([5, 6, 8, 9, 4, 7, 3, 0, 2, 1], DistributedSampler.Permutation(10, 42, 0));
        Assert.Equal(
            [5, 3, 18, 10, 1, 14, 17, 13, 2, 6, 16, 0, 11, 15, 19, 12, 4, 9, 7, 8],
            DistributedSampler.Permutation(20, -1, 3));
    }

    [Fact]
    public void PermutationIsRoughlyUniform()
    {
        // Position of element 0 over many epochs should be spread over all 8 slots.
        var hits = new int[8];
        for (int epoch = 0; epoch < 8000; epoch++)
        {
            hits[Array.IndexOf(DistributedSampler.Permutation(8, 3, epoch), 0)]++;
        }

        Assert.All(hits, h => Assert.InRange(h, 800, 1200));
    }

    [Fact]
    public void NoShuffleKeepsDatasetOrder()
    {
        DistributedSampler[] ranks = Ranks(10, 3, shuffle: false);

        Assert.Equal([0, 3, 6, 9], ranks[0].Indices(0));
        Assert.Equal([1, 4, 7, 0], ranks[1].Indices(5));
        Assert.Equal([2, 5, 8, 1], ranks[2].Indices(9));
    }

    [Fact]
    public void BatchesPerEpochDropsTheIncompleteBatch()
    {
        var sampler = new DistributedSampler(9000, 4, 3, seed: 0);

        Assert.Equal(2250, sampler.NumSamples);
        Assert.Equal(9000, sampler.TotalSize);
        Assert.Equal(35, sampler.BatchesPerEpoch(64)); // 2250 / 64 = 35.16
        Assert.Equal(2250, sampler.BatchesPerEpoch(1));
        Assert.Equal(0, sampler.BatchesPerEpoch(4096));
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.BatchesPerEpoch(0));
    }

    [Fact]
    public void ValidatesArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new DistributedSampler(0, 1, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DistributedSampler(-1, 1, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DistributedSampler(10, 0, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DistributedSampler(10, 2, 2, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DistributedSampler(10, 2, -1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DistributedSampler(10, 2, 0, 0).Indices(-1));

        var ok = new DistributedSampler(10, 2, 1, -5);
        Assert.Equal(1, ok.Rank);
        Assert.Equal(2, ok.WorldSize);
        Assert.Equal(-5, ok.Seed);
    }
}
