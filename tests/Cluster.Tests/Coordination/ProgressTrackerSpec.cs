using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class ProgressTrackerSpec
{
    private static readonly StatusMember[] Members = [new("a", 0, 2, ["cpu", "cpu"], "a:4053"), new("b", 2, 2, ["cpu", "cpu"], "b:4053")];

    [Fact]
    public void Progress_must_give_each_nodes_step_speed_and_report_age()
    {
        var progress = new ProgressTracker();
        progress.Record(new NodeProgress(1, "a", 1, [Rank(0, 10), Rank(1, 12)]), T0);
        progress.Record(new NodeProgress(1, "a", 1, [Rank(0, 30), Rank(1, 31)]), T0.AddSeconds(4));

        var view = progress.View(Members, T0.AddSeconds(5));

        Assert.Equal(30, view.Nodes[0].Step);
        Assert.Equal(5, view.Nodes[0].StepsPerSecond);
        Assert.Equal(1, view.Nodes[0].SecondsSinceReport);
        Assert.Equal((0L, 0.0, -1.0), (view.Nodes[1].Step, view.Nodes[1].StepsPerSecond, view.Nodes[1].SecondsSinceReport));
    }

    [Fact]
    public void Progress_must_name_the_slowest_rank_and_the_ranks_behind_or_stuck()
    {
        var progress = new ProgressTracker();
        progress.Record(new NodeProgress(1, "a", 1, [Rank(0, 12, 5, computeMs: 30), Rank(1, 12, 5, computeMs: 35)]), T0);
        progress.Record(new NodeProgress(1, "b", 1, [Rank(2, 11, 9000, computeMs: 55), Rank(3, 12, 5, computeMs: 31)]), T0);

        var view = progress.View(Members, T0);

        Assert.Equal((2, 55.0), (view.SlowestRank, view.SlowestComputeMs));
        var late = Assert.Single(view.LateRanks);
        Assert.Equal(new LateRank(2, "b", 11, 1, 9000), late);
        Assert.Equal(-1, new ProgressTracker().View(Members, T0).SlowestRank);
    }

    [Fact]
    public void Progress_must_say_when_the_straggler_changes_and_forget_on_clear()
    {
        var progress = new ProgressTracker();
        Assert.False(progress.Record(new NodeProgress(1, "a", 1, [Rank(0, 5, computeMs: 20), Rank(1, 5, computeMs: 21)]), T0));
        Assert.True(progress.Record(new NodeProgress(1, "b", 1, [Rank(2, 5, computeMs: 60), Rank(3, 5, computeMs: 22)]), T0));
        Assert.Equal(("b", 2), (progress.Straggler!.Node, progress.Straggler.Rank));
        Assert.False(progress.Record(new NodeProgress(1, "b", 1, [Rank(2, 6, computeMs: 61), Rank(3, 6, computeMs: 22)]), T0));
        Assert.True(progress.Record(new NodeProgress(1, "b", 1, [Rank(2, 7, computeMs: 21), Rank(3, 7, computeMs: 22)]), T0));
        Assert.Null(progress.Straggler);

        progress.Clear();
        Assert.Empty(progress.Ranks);
    }
}
