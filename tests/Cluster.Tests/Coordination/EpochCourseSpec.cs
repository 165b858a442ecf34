using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class EpochCourseSpec
{
    private static ActorTrainSettings Settings(int epochs = 2) => ActorTrainSettings.Create(TestConfig.With($"""
        actortrain.job-id = {JobId}
        actortrain.training.epochs = {epochs}
        actortrain.training.batch-size = 16
        actortrain.training.seed = 42
        """));

    /// <summary>Nodes ranked in the given order, two trainers each.</summary>
    private static RankedWorld<string> Ranked(params string[] nodes) =>
        new(nodes.Select(n => new Registration<string>(Register(n), n)).ToArray(), nodes.Select((n, i) => WorldNode(n, 2 * i)).ToArray(), 2 * nodes.Length, 0);

    private static SourceChoice From(long step, int epoch, bool epochFinished) =>
        new("a", 1, SourceReplica.FreshStart with { Position = SourceReplica.FreshStart.Position with { GlobalStep = step, Epoch = epoch, EpochFinished = epochFinished } }, 0);

    private static EpochCompleted Completed(long generation, string node, int epoch) => new(generation, node, epoch, 50, 10, 100, 0, []);

    [Fact]
    public void Course_must_number_generations_after_the_last_and_give_each_world_a_fresh_token()
    {
        var course = new EpochCourse(new RunRecorder());
        course.Start(Settings(epochs: 3));
        Assert.Equal((3, 16, 42), (course.Plan!.Epochs, course.Plan.BatchSize, course.Plan.Seed));

        var first = course.Form(Ranked("a", "b"), SourceReplica.Fresh, atLeast: 0);
        var second = course.Form(Ranked("a"), From(40, 1, false), atLeast: 5);

        Assert.Equal((1L, 5L), (first.Generation, second.Generation));
        Assert.Equal(5, course.Generation);
        Assert.Same(second, course.World);
        Assert.Equal(32, first.Plan.DataPlaneToken.Length);
        Assert.NotEqual(first.Plan.DataPlaneToken, second.Plan.DataPlaneToken);
        Assert.Equal((0, 40L), (second.Resume.SourceRank, second.Resume.Position.GlobalStep));
    }

    [Fact]
    public void Course_must_start_a_generation_once_every_node_is_ready()
    {
        var course = new EpochCourse(new RunRecorder());
        course.Start(Settings());
        course.Form(Ranked("a", "b"), SourceReplica.Fresh, atLeast: 0);

        Assert.False(course.Ready(new NodeReady(1, "a")));
        Assert.False(course.Ready(new NodeReady(2, "b")));
        Assert.True(course.Ready(new NodeReady(1, "b")));
        Assert.Equal(1, course.FirstEpoch());
    }

    [Fact]
    public void Course_must_go_on_from_the_source_replicas_epoch_and_finish_after_the_last()
    {
        var course = new EpochCourse(new RunRecorder());
        course.Start(Settings(epochs: 2));

        course.Form(Ranked("a"), From(40, 1, epochFinished: false), atLeast: 0);
        Assert.Equal(1, course.FirstEpoch());
        course.Form(Ranked("a"), From(50, 1, epochFinished: true), atLeast: 0);
        Assert.Equal(2, course.FirstEpoch());
        course.Form(Ranked("a"), From(100, 2, epochFinished: true), atLeast: 0);
        Assert.Null(course.FirstEpoch());

        course.Begin(1);
        Assert.Equal(2, course.NextEpoch());
        course.Begin(2);
        Assert.Null(course.NextEpoch());
    }

    [Fact]
    public void Course_must_count_an_epoch_only_from_every_node_of_the_running_generation_and_epoch()
    {
        var course = new EpochCourse(new RunRecorder());
        course.Start(Settings());
        course.Form(Ranked("a", "b"), SourceReplica.Fresh, atLeast: 0);
        course.Begin(1);

        Assert.Null(course.Completed(Completed(1, "a", 1), nodes: 2));
        Assert.Null(course.Completed(Completed(2, "b", 1), nodes: 2));
        Assert.Null(course.Completed(Completed(1, "b", 2), nodes: 2));
        Assert.Equal(1, course.Completed(Completed(1, "b", 1), nodes: 2)!.Epoch);

        // A new epoch: a report of the last one left over does not count towards it.
        course.Completed(Completed(1, "a", 1), nodes: 2);
        course.Begin(2);
        Assert.Null(course.Completed(Completed(1, "b", 2), nodes: 2));
    }

    [Fact]
    public void Course_must_report_once_every_node_handed_in_its_final_state_or_was_lost()
    {
        var course = new EpochCourse(new RunRecorder());
        course.Start(Settings());
        course.Form(Ranked("a", "b", "c"), SourceReplica.Fresh, atLeast: 0);
        course.AwaitFinal(["a", "b", "c"]);

        Assert.False(course.Excuse("c"));
        Assert.False(course.Finished(new NodeFinished(2, "a", [], null, [])));
        Assert.False(course.Finished(new NodeFinished(1, "a", [new TrainerSummary(0, "sha256:x", 100, 1, 1, 1, 3)], null, [])));
        Assert.True(course.Finished(new NodeFinished(1, "b", [new TrainerSummary(2, "sha256:x", 100, 1, 1, 1, 3)], "model.pth", [])));

        var report = course.Report(JobId);
        Assert.Equal(["0", "2"], report.ReplicaChecksums.Keys.Order());
        Assert.Equal("model.pth", report.ModelPath);
        Assert.True(report.ReplicasEqual);
    }

    [Fact]
    public void Course_must_take_over_the_plan_and_generation_a_rejoining_node_brings()
    {
        var recorder = new RunRecorder();
        var course = new EpochCourse(recorder);
        var plan = new TrainingPlan(5, 32, 7, 10, 1 << 20, false, 1 << 16, "akka", [], "none", 1);
        course.TakeOver(new NodeRejoin(4, [], RunHistory.Empty, plan, []));
        Assert.Equal((4L, 5), (course.Generation, course.Plan!.Epochs));

        course.Adopt(new RunHistory([new GenerationRecord(2, ["a"], 2, 0, "start", 0, 0)], [], 3));
        Assert.Equal(4, course.Generation);
        course.Adopt(new RunHistory([new GenerationRecord(6, ["a"], 2, 0, "start", 0, 0)], [], 3));
        Assert.Equal(6, course.Generation);
        Assert.Equal(7, course.Form(Ranked("a"), From(10, 1, false), atLeast: 0).Generation);
        Assert.Equal("akka", course.World!.Plan.Transport);
    }
}
