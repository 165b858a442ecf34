using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class HangDetectorSpec
{
    private static readonly WorldNode[] World = [WorldNode("a", 0), WorldNode("b", 2)];

    [Fact]
    public void Hang_must_name_the_waiting_ranks_their_bucket_and_the_rank_behind()
    {
        var progress = new ProgressTracker();
        progress.Record(new NodeProgress(1, "a", 1, [Rank(0, 12, 4000, 3), Rank(1, 12, 4000, 3)]), T0);
        progress.Record(new NodeProgress(1, "b", 1, [Rank(2, 11, 20), Rank(3, 12, 4000, 3)]), T0);

        var hang = new HangDetector(TimeSpan.FromSeconds(1)).Check(progress, World, T0.AddSeconds(1))!;

        Assert.Equal(12, hang.Step);
        Assert.Equal(4, hang.WaitedSeconds);
        Assert.Equal("3", hang.Buckets);
        Assert.Equal("rank 0 (a), rank 1 (a), rank 3 (b)", hang.Waiting);
        Assert.Equal("rank 2 on node b (at step 11)", hang.Missing);
    }

    [Fact]
    public void Hang_must_name_a_silent_node_and_report_at_most_once_per_period()
    {
        var progress = new ProgressTracker();
        progress.Record(new NodeProgress(1, "a", 1, [Rank(0, 12, 4000, 3), Rank(1, 12, 4000, 3)]), T0);
        var detector = new HangDetector(TimeSpan.FromSeconds(1));

        Assert.Contains("ranks 2..3 on node b (no progress report since never)", detector.Check(progress, World, T0)!.Missing);
        Assert.Null(detector.Check(progress, World, T0.AddMilliseconds(500)));
        Assert.Contains("ranks 0..1 on node a (no progress report since 6s ago)", detector.Check(progress, World, T0.AddSeconds(6))!.Missing);
    }

    [Fact]
    public void Hang_must_not_be_reported_before_the_deadline()
    {
        var progress = new ProgressTracker();
        progress.Record(new NodeProgress(1, "a", 1, [Rank(0, 12, 900, 3), Rank(1, 12, 5000, -1)]), T0);
        Assert.Null(new HangDetector(TimeSpan.FromSeconds(1)).Check(progress, World, T0));
    }
}
