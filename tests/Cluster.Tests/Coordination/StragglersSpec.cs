using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class StragglersSpec
{
    private static (string, RankProgress) Rank(string node, int rank, double computeMs) => (node, new RankProgress(rank, 10, computeMs + 5, computeMs, 0, -1));

    [Fact]
    public void Stragglers_must_name_the_rank_much_slower_than_the_others_median()
    {
        var s = Stragglers.Find([Rank("a", 0, 20), Rank("b", 1, 22), Rank("c", 2, 61), Rank("d", 3, 21)]);
        Assert.NotNull(s);
        Assert.Equal(("c", 2), (s.Node, s.Rank));
        Assert.Equal(61.0 / 21, s.Ratio, 6);
        Assert.Contains("rank 2 on node c", s.ToString());
    }

    [Fact]
    public void Stragglers_must_name_nobody_when_ranks_are_alike_or_unknown()
    {
        Assert.Null(Stragglers.Find([Rank("a", 0, 20), Rank("b", 1, 28)]));
        Assert.Null(Stragglers.Find([Rank("a", 0, 20)]));
        Assert.Null(Stragglers.Find([Rank("a", 0, 0), Rank("b", 1, 50)]));
        Assert.Null(Stragglers.Find([]));
    }
}
