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
        course.Start<string>(Settings(epochs: 3), []);
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
    public void Course_must_start_fresh_or_resume_from_the_furthest_checkpoint_offered_with_its_history()
    {
        var recorder = new RunRecorder();
        var fresh = new EpochCourse(recorder).Start(Settings(), [new Registration<string>(Register("a"), "a")]);
        Assert.Equal((SourceReplica.Fresh, (CheckpointOffer?)null), fresh);

        var history = new RunHistory([new GenerationRecord(3, ["a", "b"], 4, 0, "start", 0, 0)], [], 30);
        var offers = new[] { ("a", 40L), ("b", 60L), ("c", 50L) }
            .Select(o => new Registration<string>(Register(o.Item1, checkpoint: new CheckpointOffer($"{o.Item1}.ckpt", Halt(0, o.Item2), history)), o.Item1));
        var course = new EpochCourse(recorder);
        var (source, checkpoint) = course.Start(Settings(), offers);

        Assert.Equal(("b", 60L), (source.Node, source.Resume.Position.GlobalStep));
        Assert.Equal("b.ckpt", checkpoint!.File);
        Assert.Equal(3, course.Generation);
        Assert.Equal(4, course.Form(Ranked("a", "b", "c"), source, atLeast: 0).Generation);
        course.Ready(new NodeReady(4, "a"));
        recorder.GenerationStarted(course.World!);
        Assert.Equal("resumed from b.ckpt", recorder.Generations[^1].Reason);
    }

    [Fact]
    public void Course_must_keep_the_longest_history_the_nodes_of_a_lost_coordinators_world_bring()
    {
        var recorder = new RunRecorder();
        var course = new EpochCourse(recorder);
        var two = new RunHistory([new GenerationRecord(1, ["a"], 2, 0, "start", 0, 0), new GenerationRecord(2, ["a"], 2, 10, "node b was lost", 0, 1)], [], 5);

        course.Rejoined(new NodeRejoin(2, [], RunHistory.Empty, null!, []));
        Assert.Empty(recorder.Generations);
        course.Rejoined(new NodeRejoin(2, [], two, null!, []));
        course.Rejoined(new NodeRejoin(2, [], two with { Generations = two.Generations[..1] }, null!, []));

        Assert.Equal(2, recorder.Generations.Count);
        Assert.Equal(2, course.Generation);
    }

    [Fact]
    public void Course_must_warn_of_a_non_finite_gradient_and_end_the_run_only_when_the_plan_says_fail()
    {
        var course = new EpochCourse(new RunRecorder());
        var report = new NonFiniteGradientReported(1, 17, 2, "b", 3);
        course.Start<string>(Settings(), []);
        course.Form(Ranked("a", "b"), SourceReplica.Fresh, atLeast: 0);

        var skipped = course.NonFinite(report);
        Assert.Equal(NextStep.None, skipped.Step);
        Assert.Equal(["Rank 2 on node b produced 3 non-finite gradient value(s) at step 17; the step was skipped on every replica"], skipped.Warnings);

        var failing = new EpochCourse(new RunRecorder());
        failing.Start<string>(ActorTrainSettings.Create(TestConfig.With($"""
            actortrain.job-id = {JobId}
            actortrain.sync.non-finite-gradients = fail
            """)), []);
        failing.Form(Ranked("a", "b"), SourceReplica.Fresh, atLeast: 0);
        var fail = failing.NonFinite(report);
        Assert.Equal((NextStep.EndRun, ExitCodes.NonFiniteGradient, "rank 2 on node b produced a non-finite gradient at step 17 (actortrain.sync.non-finite-gradients = fail)"),
            (fail.Step, fail.ExitCode, fail.Why));
        Assert.Equal(skipped.Warnings, fail.Warnings);
    }

    [Fact]
    public void Course_must_start_a_generation_once_every_node_is_ready()
    {
        var course = new EpochCourse(new RunRecorder());
        course.Start<string>(Settings(), []);
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
        course.Start<string>(Settings(epochs: 2), []);

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
        course.Start<string>(Settings(), []);
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
        course.Start<string>(Settings(), []);
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
