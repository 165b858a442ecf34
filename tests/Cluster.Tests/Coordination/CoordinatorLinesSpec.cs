using System.Globalization;
using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

/// <summary>The coordinator's progress lines word for word: tests, scripts and the operations guide look for them.</summary>
public sealed class CoordinatorLinesSpec
{
    private static readonly Address Seed = new("akka.tcp", "actortrain", "seed", 4053);
    private static readonly TrainingPlan Plan = new(2, 16, 42, 10, 1 << 20, false, 1 << 16, "tcp", [], "none", 1);

    private static WorldAssignment World(long generation, long fromStep, int epoch) =>
        new(generation, [WorldNode("a", 0), WorldNode("b", 2)], 4, Plan,
            SourceReplica.FreshStart with { Position = SourceReplica.FreshStart.Position with { GlobalStep = fromStep, Epoch = epoch } }, RunHistory.Empty);

    [Fact]
    public void Lines_of_the_start_and_of_registration_must_name_the_job_and_the_nodes()
    {
        Assert.Equal("Coordinator started on akka.tcp://actortrain@seed:4053; waiting for 2 node(s) of job \"job-a\"", CoordinatorLines.Started(Seed, 2, JobId));
        Assert.Equal("Node a registered (2 trainer(s) on cpu,cpu); 1/2 node(s)", CoordinatorLines.Registered(Register("a"), 1, 2));
        Assert.Equal("Node c registered mid-run (2 trainer(s) on cpu,cpu); it joins at the next step boundary", CoordinatorLines.RegisteredMidRun(Register("c")));
        Assert.Equal("Resuming from checkpoint b.ckpt on node b: step 60, epoch 1",
            CoordinatorLines.Resuming(new CheckpointOffer("b.ckpt", Halt(0, 60), RunHistory.Empty), "b"));
        Assert.Equal("Coordinator taking over generation 3 of job \"job-a\" on akka.tcp://actortrain@seed:4053; waiting up to 8s for its nodes (a, b) to report",
            CoordinatorLines.TakingOver(3, JobId, Seed, TimeSpan.FromSeconds(8), ["a", "b"]));
    }

    [Fact]
    public void Lines_of_a_generation_must_give_its_world_and_where_it_goes_on_from()
    {
        Assert.Equal("Generation 1: world size 4 on 2 node(s), gradients over tcp: a (ranks 0..1), b (ranks 2..3)", CoordinatorLines.GenerationFormed(World(1, 0, 1)));
        Assert.Equal("Generation 2 trains from step 60 (epoch 1), 3.0s after node c was lost (it became unreachable); 1 step(s) redone",
            CoordinatorLines.GenerationTrains(World(2, 60, 1), 3.04, new GenerationRecord(2, ["a", "b"], 4, 60, "node c was lost (it became unreachable)", 1, 3.04)));
        Assert.Equal("Regrouping for generation 2: node b leaves (SIGTERM); waiting up to 8s for 2 node(s) to stop at a step boundary",
            CoordinatorLines.Regrouping(2, "node b leaves (SIGTERM)", TimeSpan.FromSeconds(8), 2));
        Assert.Equal("Node b is leaving (SIGTERM); the others stop after the same step and go on without it", CoordinatorLines.Leaving("b", "SIGTERM"));
        Assert.Equal("Quorum lost: it sees 1 of the 3 node(s) of the previous generation, no strict majority; training stops on this side until the network heals",
            CoordinatorLines.QuorumLost(Quorum.Lacking(1, 3)));
        Assert.Equal("Quorum regained for generation 2: 2 node(s) of the previous generation are seen again", CoordinatorLines.QuorumRegained(2, 2));
    }

    [Fact]
    public void Lines_of_epochs_and_the_end_must_read_the_same_in_any_culture()
    {
        var culture = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.GetCultureInfo("de-DE");
        try
        {
            var epoch = new EpochRecord(1, 50, 0.123456, 2, new() { ["test_accuracy"] = 0.9312 });
            Assert.Equal("Epoch 1/2 done: mean training loss 0.1235, test accuracy 0.9312, 2 step(s) skipped", CoordinatorLines.EpochDone(epoch, 2));
            Assert.Equal("Epoch 2/2 done: mean training loss 0.5000", CoordinatorLines.EpochDone(new EpochRecord(2, 100, 0.5, 0, null), 2));

            var recorder = new RunRecorder();
            recorder.Record(epoch);
            var finished = new NodeFinished(1, "a", [new TrainerSummary(0, "sha256:x", 80, 1, 1, 1, 3), new TrainerSummary(1, "sha256:y", 80, 1, 1, 1, 3)], null, []);
            var report = recorder.Report(JobId, World(1, 0, 1), [finished]);
            Assert.Equal("Run complete: 80 steps, test accuracy 0.9312, replicas DIFFER; report at /out/run-report.json", CoordinatorLines.RunComplete(report, "/out/run-report.json"));
            Assert.Equal("Ending the run: training complete", CoordinatorLines.Ending("training complete"));
        }
        finally
        {
            CultureInfo.CurrentCulture = culture;
        }
    }
}
