using ActorTrain.TrainerActors.Data;

namespace ActorTrain.TrainerActors.Tests.Data;

public sealed class DistributedSamplerTests
{
    /// <summary>Every rank's samples of every step of one epoch, with the world changing at the given steps.</summary>
    private static List<int> EpochSamples(DistributedSampler sampler, int epoch, int batch, params (int AfterSteps, int World)[] worlds)
    {
        var order = sampler.Order(epoch);
        var seen = new List<int>();
        long done = 0;
        var steps = 0;
        var w = 0;
        while (true)
        {
            while (w + 1 < worlds.Length && steps >= worlds[w + 1].AfterSteps) w++;
            var world = worlds[w].World;
            if (sampler.StepsLeft(done, world, batch) == 0) break;
            for (var r = 0; r < world; r++) seen.AddRange(DistributedSampler.Batch(order, done, world, r, batch).ToArray());
            done += (long)world * batch;
            steps++;
        }
        return seen;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void AnEpochTrainsOnDistinctSamplesAndDropsOnlyTheLastPartialGlobalBatch(int worldSize)
    {
        var sampler = new DistributedSampler(9000, seed: 42);
        var seen = EpochSamples(sampler, 1, 64, (0, worldSize));

        Assert.Equal(seen.Count, seen.Distinct().Count());
        Assert.Equal(9000 / (64 * worldSize) * 64 * worldSize, seen.Count);
        Assert.All(seen, i => Assert.InRange(i, 0, 8999));
    }

    [Fact]
    public void AWorldThatChangesMidEpochNeverRepeatsASample()
    {
        var sampler = new DistributedSampler(9000, seed: 7);
        // Three nodes, one lost after 10 steps, a new one joins after 30.
        var seen = EpochSamples(sampler, 2, 64, (0, 3), (10, 2), (30, 3));

        Assert.Equal(seen.Count, seen.Distinct().Count());
        Assert.True(9000 - seen.Count < 3 * 64, $"{9000 - seen.Count} samples left untrained, more than one global batch");
    }

    [Fact]
    public void TheShardsOfAStepAreDisjointEqualSlices()
    {
        var order = new DistributedSampler(1000, seed: 3).Order(0);
        var a = DistributedSampler.Batch(order, 128, 3, 0, 32).ToArray();
        var b = DistributedSampler.Batch(order, 128, 3, 1, 32).ToArray();
        var c = DistributedSampler.Batch(order, 128, 3, 2, 32).ToArray();

        Assert.Equal(order.Skip(128).Take(96), a.Concat(b).Concat(c));
        Assert.Empty(a.Intersect(b));
    }

    [Fact]
    public void OrderChangesEveryEpochAndDependsOnTheSeedAlone()
    {
        var a = new DistributedSampler(9000, seed: 123);
        var b = new DistributedSampler(9000, seed: 123);

        Assert.Equal(a.Order(4), b.Order(4));
        Assert.NotEqual(a.Order(4), a.Order(5));
        Assert.NotEqual(a.Order(0), new DistributedSampler(9000, seed: 124).Order(0));
    }

    [Fact]
    public void ShuffleIsActuallyShuffled()
    {
        int[] order = new DistributedSampler(1000, seed: 0).Order(0);

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
        var order = new DistributedSampler(10, seed: 1, shuffle: false).Order(3);

        Assert.Equal(Enumerable.Range(0, 10), order);
        Assert.Equal([4, 5], DistributedSampler.Batch(order, 2, 2, 1, 2).ToArray());
    }

    [Fact]
    public void StepsLeftCountsFullGlobalBatches()
    {
        var sampler = new DistributedSampler(9000, seed: 0);

        Assert.Equal(35, sampler.StepsLeft(0, 4, 64)); // 9000 / 256 = 35.2
        Assert.Equal(70, sampler.StepsLeft(0, 2, 64));
        Assert.Equal(1, sampler.StepsLeft(9000 - 128, 2, 64));
        Assert.Equal(0, sampler.StepsLeft(9000 - 127, 2, 64));
        Assert.Equal(0, sampler.StepsLeft(9000, 1, 1));
        Assert.Equal(0, sampler.StepsLeft(0, 1, 9001));
    }

    [Fact]
    public void ValidatesArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new DistributedSampler(0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DistributedSampler(-1, 0));
        var sampler = new DistributedSampler(10, 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.Order(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.StepsLeft(0, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => sampler.StepsLeft(0, 1, 0));
        var order = sampler.Order(0);
        Assert.Throws<ArgumentOutOfRangeException>(() => DistributedSampler.Batch(order, 0, 2, 2, 2).ToArray());
        Assert.Throws<ArgumentOutOfRangeException>(() => DistributedSampler.Batch(order, 8, 2, 0, 2).ToArray());
    }
}
