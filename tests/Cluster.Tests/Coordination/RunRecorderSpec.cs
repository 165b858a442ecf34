using System.Diagnostics;
using System.Text.Json;
using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class RunRecorderSpec
{
    private static readonly TrainingPlan Plan = new(2, 16, 42, 10, 1 << 20, false, 1 << 16, "tcp", [], "none", 2);

    private static WorldAssignment World(long generation, long startStep, params string[] nodes) =>
        new(generation, nodes.Select((n, i) => WorldNode(n, 2 * i)).ToArray(), 2 * nodes.Length, Plan,
            SourceReplica.FreshStart with { Position = SourceReplica.FreshStart.Position with { GlobalStep = startStep } }, RunHistory.Empty);

    [Fact]
    public void Recorder_must_combine_every_nodes_epoch_report_into_one_record()
    {
        var recorder = new RunRecorder();
        Assert.Null(recorder.Tally(new EpochCompleted(1, "a", 1, 50, 10, 100, 0, []), 2));
        Assert.Null(recorder.Tally(new EpochCompleted(1, "a", 1, 50, 12, 100, 0, []), 2));
        var epoch = recorder.Tally(new EpochCompleted(1, "b", 1, 51, 20, 100, 2, new() { ["test_accuracy"] = 0.91 }), 2);

        Assert.Equal(new EpochRecord(1, 51, 0.16, 2, new() { ["test_accuracy"] = 0.91 }), epoch);
        Assert.True(recorder.Record(epoch!));
        Assert.False(recorder.Record(epoch! with { MeanLoss = 9 }));
        Assert.Equal(0.16, Assert.Single(recorder.History().Epochs).MeanLoss);
    }

    [Fact]
    public void Recorder_must_record_generations_with_their_reason_and_recovery_time()
    {
        var recorder = new RunRecorder();
        recorder.Next("start");
        Assert.Null(recorder.GenerationStarted(World(1, 0, "a", "b")));
        recorder.Next("node b was lost", stepsRedone: 1, started: Stopwatch.GetTimestamp());
        Assert.True(recorder.GenerationStarted(World(2, 60, "a")) >= 0);

        var history = recorder.History();
        var first = history.Generations[0];
        Assert.Equal(["a", "b"], first.Members);
        Assert.Equal((1L, 4, 0L, "start", 0, 0.0), (first.Generation, first.WorldSize, first.StartStep, first.Reason, first.StepsRedone, first.RecoverySeconds));
        Assert.Equal(("node b was lost", 1, 60L), (history.Generations[1].Reason, history.Generations[1].StepsRedone, history.Generations[1].StartStep));
    }

    [Fact]
    public void Recorder_must_adopt_a_history_and_keep_its_wall_time()
    {
        var recorder = new RunRecorder();
        var last = recorder.Adopt(new RunHistory([new GenerationRecord(3, ["a"], 2, 0, "start", 0, 0)], [new EpochRecord(1, 50, 0.4, 0, new() { ["test_accuracy"] = 0.9 })], 12));
        Assert.Equal(3, last);
        Assert.True(recorder.History().WallSeconds >= 12);
        Assert.Single(recorder.Epochs);
    }

    [Fact]
    public void Recorder_must_take_a_finished_epoch_from_the_source_only_when_it_finished_one()
    {
        var finished = SourceReplica.ResumeFrom(Halt(0, 40, finished: true), "");
        Assert.Equal(new EpochRecord(1, 40, 0.5, 0, null), RunRecorder.FinishedBy(finished));
        Assert.Null(RunRecorder.FinishedBy(finished with { Position = finished.Position with { EpochFinished = false } }));
    }

    [Fact]
    public void Report_must_hold_the_history_records_under_the_report_names()
    {
        var recorder = new RunRecorder();
        recorder.Next("start");
        var world = World(1, 0, "a", "b");
        recorder.GenerationStarted(world);
        recorder.Record(new EpochRecord(1, 50, 0.2, 1, new() { ["test_accuracy"] = 0.91 }));
        recorder.Record(new EpochRecord(2, 100, 0.1, 0, new() { ["test_accuracy"] = 0.97 }));
        NodeFinished Finished(string node, int first, string checksum) =>
            new(1, node, [new TrainerSummary(first, checksum, 100, 10, 1, 2, 13), new TrainerSummary(first + 1, checksum, 100, 12, 1, 2, 15)],
                first == 0 ? "out/model.pth" : null, first == 0 ? [new LossSample(20, 2.0)] : []);

        var report = recorder.Report(JobId, world, [Finished("b", 2, "sha256:x"), Finished("a", 0, "sha256:x")]);

        Assert.True(report.ReplicasEqual);
        Assert.Equal(["0", "1", "2", "3"], report.ReplicaChecksums.Keys);
        Assert.Equal(11, report.TimingsMs.Compute);
        Assert.Equal(64 * 2, report.GlobalBatch);
        Assert.Equal((0.1, 0.97, 1), (report.FinalLoss, report.Metrics["test_accuracy"], report.SkippedSteps));
        Assert.Equal("out/model.pth", report.ModelPath);
        var json = JsonDocument.Parse(report.ToJson()).RootElement;
        var epoch = json.GetProperty("epoch_history")[0];
        Assert.Equal(["epoch", "end_step", "mean_loss", "skipped_steps", "test_accuracy"], epoch.EnumerateObject().Select(p => p.Name));
        Assert.Equal(50, epoch.GetProperty("end_step").GetInt64());
        Assert.Equal(["generation", "members", "world_size", "start_step", "reason", "steps_redone", "recovery_seconds"],
            json.GetProperty("generations")[0].EnumerateObject().Select(p => p.Name));
        Assert.False(recorder.Report(JobId, world, [Finished("a", 0, "sha256:x"), Finished("b", 2, "sha256:y")]).ReplicasEqual);
    }
}
