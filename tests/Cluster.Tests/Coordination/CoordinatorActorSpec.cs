using System.Diagnostics;
using System.Text.Json;
using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Event;
using Akka.TestKit;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class CoordinatorActorSpec(SeedSystem seed) : IClassFixture<SeedSystem>, IDisposable
{
    private const string JobId = "job-a";
    private const string Fingerprint = "fp-1";
    private const int Trainers = 2;

    private readonly string _outDir = Path.Combine(Path.GetTempPath(), "actortrain-cluster-tests", Guid.NewGuid().ToString("N"));
    private static int _coordinators;

    public void Dispose()
    {
        if (Directory.Exists(_outDir)) Directory.Delete(_outDir, recursive: true);
    }

    private ActorTrainSettings Settings(string hocon = "") => ActorTrainSettings.Create(TestConfig.With($"""
        actortrain.job-id = {JobId}
        actortrain.min-nodes = 2
        actortrain.training.epochs = 2
        actortrain.training.batch-size = 16
        actortrain.training.seed = 42
        actortrain.training.out-dir = "{_outDir}"
        {hocon}
        """));

    private IActorRef StartCoordinator(ActorTrainSettings settings) =>
        seed.Kit.Sys.ActorOf(CoordinatorActor.Props(settings), $"coordinator-{Interlocked.Increment(ref _coordinators)}");

    private TestProbe Node() => seed.Kit.CreateTestProbe();

    private static RegisterNode Registration(string name, string job = JobId, int version = ActorTrainSettings.ProtocolVersion,
        string fingerprint = Fingerprint, int trainers = Trainers) =>
        new(job, version, fingerprint, name, trainers, $"akka.tcp://actortrain@{name}:4053/user/node",
            $"akka.tcp://actortrain@{name}:4053/user/actortrain-endpoint", Enumerable.Repeat("cpu", trainers).ToArray(), $"{name}:4054", null, null);

    private static T Expect<T>(TestProbe probe) => probe.ExpectMsg<T>(TestConfig.Timeout);

    private static EpochCompleted Epoch(long generation, string node, int epoch, double lossSum = 10, long lossCount = 100, double accuracy = -1) =>
        new(generation, node, epoch, Steps: 50, lossSum, lossCount, SkippedSteps: 0, accuracy >= 0 ? new() { ["test_accuracy"] = accuracy } : []);

    private static NodeFinished Finished(long generation, string node, int firstRank, string checksum = "sha256:same", string? model = null) =>
        new(generation, node, Enumerable.Range(firstRank, Trainers).Select(r => new TrainerSummary(r, checksum, 100, 10 + r, 1, 2, 13 + r)).ToArray(), model,
            firstRank == 0 ? [new LossSample(20, 2.0), new LossSample(40, 1.5)] : []);

    /// <summary>Two nodes registered, a world formed and both ready: the coordinator has sent StartEpoch(1).</summary>
    private (IActorRef Coordinator, TestProbe A, TestProbe B, WorldAssignment World) Training(string hocon = "")
    {
        var (coordinator, nodes, world) = TrainingWith(hocon, "node-a", "node-b");
        return (coordinator, nodes[0], nodes[1], world);
    }

    /// <summary>The named nodes registered in order (min-nodes must match in <paramref name="hocon"/>), a world formed and all ready.</summary>
    private (IActorRef Coordinator, TestProbe[] Nodes, WorldAssignment World) TrainingWith(string hocon, params string[] names)
    {
        var coordinator = StartCoordinator(Settings(hocon));
        var nodes = names.Select(_ => Node()).ToArray();
        for (var i = 0; i < names.Length; i++)
        {
            nodes[i].Send(coordinator, Registration(names[i]));
            Expect<NodeRegistered>(nodes[i]);
        }
        var world = Expect<WorldAssignment>(nodes[0]);
        foreach (var n in nodes.Skip(1)) Assert.Equal(world.Generation, Expect<WorldAssignment>(n).Generation);
        for (var i = 0; i < names.Length; i++) nodes[i].Send(coordinator, new NodeReady(world.Generation, names[i]));
        foreach (var n in nodes) Assert.Equal(new StartEpoch(world.Generation, 1), ExpectStarted(n));
        return (coordinator, nodes, world);
    }

    /// <summary>A generation starts: every node gets the run's history with the generation recorded, then the epoch to run.</summary>
    private static StartEpoch ExpectStarted(TestProbe probe)
    {
        var started = Expect<HistoryUpdate>(probe).History.Generations[^1];
        var epoch = Expect<StartEpoch>(probe);
        Assert.Equal(started.Generation, epoch.Generation);
        return epoch;
    }

    /// <summary>After an epoch every node gets the run's history with that epoch in it, before anything else.</summary>
    private static RunHistory ExpectEpochRecorded(TestProbe probe, int epoch)
    {
        var history = Expect<HistoryUpdate>(probe).History;
        Assert.Equal(epoch, history.Epochs[^1].Epoch);
        return history;
    }

    /// <summary>A trainer's state as its node reports it when it stops for a regroup.</summary>
    private static TrainerHaltState Halt(int rank, long step, bool inFlight = false, int epoch = 1, long stepsInEpoch = -1, bool finished = false,
        double lossSum = 0, long lossCount = 0, int skipped = 0, int optimizerBytes = 0) =>
        new(rank, new TrainingPosition(step, epoch, (stepsInEpoch < 0 ? step : stepsInEpoch) * 16, stepsInEpoch < 0 ? step : stepsInEpoch, finished, lossSum, lossCount,
            skipped), inFlight, optimizerBytes, $"sha256:{rank}");

    private static string[] Names(WorldAssignment world) => world.Nodes.Select(n => n.NodeName).ToArray();

    private ClusterStatus Status(IActorRef coordinator)
    {
        var probe = Node();
        probe.Send(coordinator, new GetStatus("q"));
        return probe.ExpectMsg<ClusterStatus>(TestConfig.Timeout);
    }

    /// <summary>Two epochs of <paramref name="generation"/> reported by every node, through to the report and EndRun(0).</summary>
    private JsonElement FinishTwoEpochs(IActorRef coordinator, long generation, (TestProbe Probe, string Name)[] nodes, int fromEpoch = 1, int epochs = 2)
    {
        for (var epoch = fromEpoch; epoch <= epochs; epoch++)
        {
            foreach (var (probe, name) in nodes) probe.Send(coordinator, Epoch(generation, name, epoch));
            foreach (var (probe, _) in nodes) ExpectEpochRecorded(probe, epoch);
            foreach (var (probe, _) in nodes)
            {
                if (epoch < epochs) Assert.Equal(new StartEpoch(generation, epoch + 1), Expect<StartEpoch>(probe));
                else Assert.Equal(new FinishTraining(generation), Expect<FinishTraining>(probe));
            }
        }
        for (var i = 0; i < nodes.Length; i++) nodes[i].Probe.Send(coordinator, Finished(generation, nodes[i].Name, i * Trainers));
        foreach (var (probe, _) in nodes) Assert.Equal(0, Expect<EndRun>(probe).ExitCode);
        return JsonDocument.Parse(File.ReadAllText(Path.Combine(_outDir, "run-report.json"))).RootElement.Clone();
    }

    [Fact]
    public void Coordinator_must_refuse_a_node_of_another_job_naming_both_ids()
    {
        var coordinator = StartCoordinator(Settings());
        var node = Node();

        node.Send(coordinator, Registration("node-a", job: "job-b"));

        var refusal = Expect<RegistrationRefused>(node);
        Assert.Contains("job-b", refusal.Reason);
        Assert.Contains(JobId, refusal.Reason);
    }

    [Fact]
    public void Coordinator_must_refuse_a_node_of_another_protocol_version()
    {
        var coordinator = StartCoordinator(Settings());
        var node = Node();

        node.Send(coordinator, Registration("node-a", version: ActorTrainSettings.ProtocolVersion + 1));

        Assert.Contains("protocol version", Expect<RegistrationRefused>(node).Reason);
    }

    [Fact]
    public void Coordinator_must_refuse_a_node_with_another_model_fingerprint()
    {
        var coordinator = StartCoordinator(Settings());
        var (a, b) = (Node(), Node());

        a.Send(coordinator, Registration("node-a"));
        Expect<NodeRegistered>(a);
        b.Send(coordinator, Registration("node-b", fingerprint: "fp-2"));

        Assert.Contains("fingerprint", Expect<RegistrationRefused>(b).Reason);
    }

    [Fact]
    public void Coordinator_must_refuse_a_node_with_another_number_of_trainers()
    {
        var coordinator = StartCoordinator(Settings());
        var (a, b) = (Node(), Node());

        a.Send(coordinator, Registration("node-a"));
        Expect<NodeRegistered>(a);
        b.Send(coordinator, Registration("node-b", trainers: Trainers + 1));

        Assert.Contains("trainer", Expect<RegistrationRefused>(b).Reason);
    }

    [Fact]
    public void Coordinator_must_refuse_a_second_node_with_a_name_already_taken()
    {
        var coordinator = StartCoordinator(Settings());
        var (a, impostor) = (Node(), Node());

        a.Send(coordinator, Registration("node-a"));
        Expect<NodeRegistered>(a);
        impostor.Send(coordinator, Registration("node-a"));

        Assert.Contains("already taken", Expect<RegistrationRefused>(impostor).Reason);
    }

    [Fact]
    public void Coordinator_must_answer_a_repeated_registration_without_counting_the_node_twice()
    {
        var coordinator = StartCoordinator(Settings());
        var a = Node();

        a.Send(coordinator, Registration("node-a"));
        Assert.Equal(new NodeRegistered("node-a", 1, 2), Expect<NodeRegistered>(a));
        a.Send(coordinator, Registration("node-a"));

        Assert.Equal(new NodeRegistered("node-a", 1, 2), Expect<NodeRegistered>(a));
        a.ExpectNoMsg(TestConfig.Quiet);
    }

    [Fact]
    public void Coordinator_must_assign_ranks_in_registration_order_once_min_nodes_have_registered()
    {
        var coordinator = StartCoordinator(Settings());
        var (a, b) = (Node(), Node());

        a.Send(coordinator, Registration("node-a"));
        Assert.Equal(new NodeRegistered("node-a", 1, 2), Expect<NodeRegistered>(a));
        a.ExpectNoMsg(TestConfig.Quiet);
        b.Send(coordinator, Registration("node-b"));
        Assert.Equal(new NodeRegistered("node-b", 2, 2), Expect<NodeRegistered>(b));

        var world = Expect<WorldAssignment>(a);
        Assert.Equal(1, world.Generation);
        Assert.Equal(2 * Trainers, world.WorldSize);
        Assert.Equal(["node-a", "node-b"], world.Nodes.Select(n => n.NodeName));
        Assert.Equal([0, Trainers], world.Nodes.Select(n => n.FirstRank));
        Assert.All(world.Nodes, n => Assert.Equal(Trainers, n.TrainerCount));
        Assert.Equal(Registration("node-b").EndpointPath, world.Nodes[1].EndpointPath);
        Assert.Equal(Registration("node-b").NodeActorPath, world.Nodes[1].NodeActorPath);
        // The coordinator's defaults: the tcp transport with its chunk size and a fresh 32-byte token.
        Assert.Equal((2, 16, 42, 100, 4L << 20, false, 80 * 1024, "tcp"),
            (world.Plan.Epochs, world.Plan.BatchSize, world.Plan.Seed, world.Plan.LogInterval, world.Plan.BucketSizeBytes, world.Plan.FailOnNonFinite,
             world.Plan.ChunkSizeBytes, world.Plan.Transport));
        Assert.Equal(32, world.Plan.DataPlaneToken.Length);
        Assert.Equal("node-b:4054", world.Nodes[1].DataPlaneEndpoint);
        var other = Expect<WorldAssignment>(b);
        Assert.Equal(world.Generation, other.Generation);
        Assert.Equal(world.Nodes.Select(n => n.NodeName), other.Nodes.Select(n => n.NodeName));
    }

    [Fact]
    public void Coordinator_must_start_the_first_epoch_only_when_every_node_is_ready()
    {
        var coordinator = StartCoordinator(Settings());
        var (a, b) = (Node(), Node());
        a.Send(coordinator, Registration("node-a"));
        b.Send(coordinator, Registration("node-b"));
        Expect<NodeRegistered>(a);
        Expect<NodeRegistered>(b);
        Expect<WorldAssignment>(a);
        Expect<WorldAssignment>(b);

        a.Send(coordinator, new NodeReady(1, "node-a"));
        b.Send(coordinator, new NodeReady(99, "node-b"));
        a.ExpectNoMsg(TestConfig.Quiet);
        b.Send(coordinator, new NodeReady(1, "node-b"));

        Assert.Equal(new StartEpoch(1, 1), ExpectStarted(a));
        Assert.Equal(new StartEpoch(1, 1), ExpectStarted(b));
    }

    [Fact]
    public void Coordinator_must_run_every_epoch_then_finish_end_the_run_and_write_the_report()
    {
        var (coordinator, a, b, world) = Training();

        a.Send(coordinator, Epoch(1, "node-a", 1, lossSum: 30, lossCount: 100, accuracy: 0.91));
        b.Send(coordinator, Epoch(1, "node-b", 1, lossSum: 10, lossCount: 100));
        var history = ExpectEpochRecorded(a, 1);
        Assert.Equal(new EpochRecord(1, 50, 0.2, 0, new() { ["test_accuracy"] = 0.91 }), Assert.Single(history.Epochs));
        Assert.Equal(1, Assert.Single(history.Generations).Generation);
        ExpectEpochRecorded(b, 1);
        Assert.Equal(new StartEpoch(1, 2), Expect<StartEpoch>(a));
        Assert.Equal(new StartEpoch(1, 2), Expect<StartEpoch>(b));
        a.Send(coordinator, Epoch(1, "node-a", 2, lossSum: 12, lossCount: 100, accuracy: 0.97));
        b.Send(coordinator, Epoch(1, "node-b", 2, lossSum: 8, lossCount: 100));
        Assert.Equal([1, 2], ExpectEpochRecorded(a, 2).Epochs.Select(e => e.Epoch));
        ExpectEpochRecorded(b, 2);
        Assert.Equal(new FinishTraining(1), Expect<FinishTraining>(a));
        Assert.Equal(new FinishTraining(1), Expect<FinishTraining>(b));
        a.Send(coordinator, Finished(1, "node-a", 0, model: "out/model.pth"));
        b.Send(coordinator, Finished(1, "node-b", Trainers));

        Assert.Equal(0, Expect<EndRun>(a).ExitCode);
        Assert.Equal(0, Expect<EndRun>(b).ExitCode);
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(_outDir, "run-report.json")));
        var r = report.RootElement;
        Assert.Equal(JobId, r.GetProperty("job_id").GetString());
        Assert.Equal("completed", r.GetProperty("status").GetString());
        Assert.Equal(world.WorldSize, r.GetProperty("world_size").GetInt32());
        Assert.Equal(2, r.GetProperty("epochs").GetInt32());
        Assert.Equal(16 * world.WorldSize, r.GetProperty("global_batch").GetInt32());
        Assert.Equal(42, r.GetProperty("seed").GetInt32());
        Assert.Equal(0.97, r.GetProperty("test_accuracy").GetDouble());
        Assert.Equal(0.1, r.GetProperty("final_loss").GetDouble(), 1e-12);
        Assert.Equal(0.2, r.GetProperty("epoch_history")[0].GetProperty("mean_loss").GetDouble(), 1e-12);
        Assert.Equal(["0", "1", "2", "3"], r.GetProperty("replica_checksums").EnumerateObject().Select(p => p.Name));
        Assert.All(r.GetProperty("replica_checksums").EnumerateObject(), p => Assert.Equal("sha256:same", p.Value.GetString()));
        Assert.True(r.GetProperty("replicas_equal").GetBoolean());
        Assert.Equal(["node-a", "node-b"], r.GetProperty("nodes").EnumerateArray().Select(n => n.GetProperty("name").GetString()));
        Assert.Equal("out/model.pth", r.GetProperty("model_path").GetString());
        Assert.Equal(100, r.GetProperty("steps").GetInt64());
        Assert.Equal(50, r.GetProperty("epoch_history")[0].GetProperty("end_step").GetInt64());
        Assert.Equal([20L, 40L], r.GetProperty("loss_curve").EnumerateArray().Select(p => p.GetProperty("step").GetInt64()));
        Assert.Equal(1.5, r.GetProperty("loss_curve")[1].GetProperty("loss").GetDouble());
    }

    [Fact]
    public void Coordinator_must_answer_a_status_query_with_progress_and_late_ranks()
    {
        var (coordinator, a, b, world) = Training();
        a.Send(coordinator, new NodeProgress(1, "node-a", 1, [new RankProgress(0, 12, 40, 30, 5, -1), new RankProgress(1, 12, 40, 35, 5, -1)]));
        b.Send(coordinator, new NodeProgress(1, "node-b", 1, [new RankProgress(2, 11, 40, 55, 9000, -1), new RankProgress(3, 12, 40, 31, 5, -1)]));
        var probe = Node();
        probe.Send(coordinator, new GetStatus("q"));
        var status = probe.ExpectMsg<ClusterStatus>(TimeSpan.FromSeconds(5));
        Assert.Equal("q", status.RequestId);
        Assert.Equal("training", status.Phase);
        Assert.Equal(1, status.Generation);
        Assert.Equal(1, status.Epoch);
        Assert.Equal(world.WorldSize, status.WorldSize);
        Assert.Equal(["node-a", "node-b"], status.Nodes.Select(n => n.NodeName));
        Assert.Equal(11, status.Nodes[1].Step);
        Assert.Equal(2, status.SlowestRank);
        var late = Assert.Single(status.LateRanks);
        Assert.Equal(2, late.Rank);
        Assert.Equal("node-b", late.NodeName);
        Assert.Equal(1, late.StepsBehind);
    }

    [Fact]
    public void Coordinator_must_end_the_run_with_an_error_when_replicas_differ()
    {
        var (coordinator, a, b, _) = Training("actortrain.training.epochs = 1");
        a.Send(coordinator, Epoch(1, "node-a", 1));
        b.Send(coordinator, Epoch(1, "node-b", 1));
        ExpectEpochRecorded(a, 1);
        ExpectEpochRecorded(b, 1);
        Expect<FinishTraining>(a);
        Expect<FinishTraining>(b);

        a.Send(coordinator, Finished(1, "node-a", 0));
        b.Send(coordinator, Finished(1, "node-b", Trainers, checksum: "sha256:other"));

        Assert.Equal(6, Expect<EndRun>(a).ExitCode);
        Assert.Equal(6, Expect<EndRun>(b).ExitCode);
        Assert.Contains("\"replicas_equal\": false", File.ReadAllText(Path.Combine(_outDir, "run-report.json")));
    }

    [Fact]
    public void Coordinator_must_end_the_run_when_an_epoch_has_no_loss_to_average()
    {
        // Every step skipped (non-finite gradients): the mean loss is not a number, and the report must still be written.
        var (coordinator, a, b, _) = Training("actortrain.training.epochs = 1");
        a.Send(coordinator, Epoch(1, "node-a", 1, lossSum: 0, lossCount: 0));
        b.Send(coordinator, Epoch(1, "node-b", 1, lossSum: 0, lossCount: 0));
        ExpectEpochRecorded(a, 1);
        ExpectEpochRecorded(b, 1);
        Expect<FinishTraining>(a);
        Expect<FinishTraining>(b);

        a.Send(coordinator, Finished(1, "node-a", 0));
        b.Send(coordinator, Finished(1, "node-b", Trainers));

        Assert.Equal(0, Expect<EndRun>(a).ExitCode);
        Assert.Equal(0, Expect<EndRun>(b).ExitCode);
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(_outDir, "run-report.json")));
        Assert.Equal("NaN", report.RootElement.GetProperty("final_loss").GetString());
    }

    [Fact]
    public void Coordinator_must_end_the_run_with_an_error_when_the_report_cannot_be_written()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(_outDir)!);
        File.WriteAllText(_outDir, "a file where the out-dir should be");
        try
        {
            var (coordinator, a, b, _) = Training("actortrain.training.epochs = 1");
            a.Send(coordinator, Epoch(1, "node-a", 1));
            b.Send(coordinator, Epoch(1, "node-b", 1));
            ExpectEpochRecorded(a, 1);
            ExpectEpochRecorded(b, 1);
            Expect<FinishTraining>(a);
            Expect<FinishTraining>(b);

            a.Send(coordinator, Finished(1, "node-a", 0));
            b.Send(coordinator, Finished(1, "node-b", Trainers));

            Assert.Equal(5, Expect<EndRun>(a).ExitCode);
            Assert.Equal(5, Expect<EndRun>(b).ExitCode);
        }
        finally
        {
            File.Delete(_outDir);
        }
    }

    [Fact]
    public void Coordinator_must_ignore_reports_of_another_generation_or_epoch()
    {
        var (coordinator, a, b, _) = Training();

        a.Send(coordinator, Epoch(1, "node-a", 1));
        b.Send(coordinator, Epoch(2, "node-b", 1));
        b.Send(coordinator, Epoch(1, "node-b", 2));
        a.ExpectNoMsg(TestConfig.Quiet);
        b.Send(coordinator, Epoch(1, "node-b", 1));

        ExpectEpochRecorded(a, 1);
        Assert.Equal(new StartEpoch(1, 2), Expect<StartEpoch>(a));
    }

    [Fact]
    public void Coordinator_must_end_the_run_on_every_node_when_one_fails_and_elastic_is_off()
    {
        var (coordinator, a, b, _) = Training("actortrain.elastic.enabled = off");

        b.Send(coordinator, new NodeFailed("node-b", "CUDA out of memory"));

        var end = Expect<EndRun>(a);
        Assert.NotEqual(0, end.ExitCode);
        Assert.Contains("node-b", end.Reason);
        Assert.Contains("CUDA out of memory", end.Reason);
        Assert.NotEqual(0, Expect<EndRun>(b).ExitCode);
    }

    [Fact]
    public void Coordinator_must_go_on_without_a_node_whose_trainer_failed_when_elastic()
    {
        var (coordinator, nodes, _) = TrainingWith("actortrain.min-nodes = 3", "node-a", "node-b", "node-c");
        var (a, b, c) = (nodes[0], nodes[1], nodes[2]);

        b.Send(coordinator, new NodeFailed("node-b", "CUDA out of memory"));

        var end = Expect<EndRun>(b);
        Assert.Equal(1, end.ExitCode);
        Assert.Contains("CUDA out of memory", end.Reason);
        Assert.False(Expect<Regroup>(a).Graceful);
        Expect<Regroup>(c);
        a.Send(coordinator, new NodeHalted(2, "node-a", [Halt(0, 9), Halt(1, 9)], "node-a:5054"));
        c.Send(coordinator, new NodeHalted(2, "node-c", [Halt(4, 9), Halt(5, 9)], "node-c:5054"));
        Assert.Equal(["node-a", "node-c"], Names(Expect<WorldAssignment>(a)));
        Expect<WorldAssignment>(c);
    }

    [Fact]
    public void Coordinator_must_ignore_a_failure_report_from_an_actor_that_is_not_the_named_node()
    {
        var (coordinator, a, b, _) = Training("actortrain.elastic.enabled = off");
        var stranger = Node();

        stranger.Send(coordinator, new NodeFailed("node-b", "forged"));

        a.ExpectNoMsg(TimeSpan.FromMilliseconds(500));
        b.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void Coordinator_must_not_form_a_generation_on_a_side_without_the_majority()
    {
        var (coordinator, nodes, _) = TrainingWith("""
            actortrain.min-nodes = 3
            actortrain.elastic.regroup-timeout = 1s
            """, "node-a", "node-b", "node-c");
        var (a, b, c) = (nodes[0], nodes[1], nodes[2]);

        // node-a's side of a partition: node-b and node-c never answer the regroup.
        a.Send(coordinator, new GenerationBroken(1, "node-a", "step 7 waited past actortrain.sync.step-timeout", ""));
        foreach (var n in nodes) Expect<Regroup>(n);
        a.Send(coordinator, new NodeHalted(2, "node-a", [Halt(0, 7), Halt(1, 7)], "node-a:5054"));

        // 1 of 3: no world, no end of the run, nobody left out (they may be training on the other side).
        a.ExpectNoMsg(TimeSpan.FromSeconds(2));
        b.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        c.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        Assert.Equal("quorum-lost", Status(coordinator).Phase);

        // The network heals: node-b answers with the state it stopped in, and the majority forms the next generation.
        b.Send(coordinator, new NodeHalted(2, "node-b", [Halt(2, 7), Halt(3, 7)], "node-b:5054"));
        var world = Expect<WorldAssignment>(a);
        Assert.Equal(2, world.Generation);
        Assert.Contains("node-b", Names(world));
    }

    [Fact]
    public void Coordinator_must_go_on_after_an_even_split_only_in_the_half_with_the_lowest_address()
    {
        // Four nodes; node-a has the lowest address (host names order as strings).
        var (coordinator, nodes, _) = TrainingWith("""
            actortrain.min-nodes = 4
            actortrain.elastic.regroup-timeout = 1s
            """, "node-a", "node-b", "node-c", "node-d");
        nodes[0].Send(coordinator, new GenerationBroken(1, "node-a", "connection reset", ""));
        foreach (var n in nodes) Expect<Regroup>(n);
        nodes[0].Send(coordinator, new NodeHalted(2, "node-a", [Halt(0, 7), Halt(1, 7)], "node-a:5054"));
        nodes[1].Send(coordinator, new NodeHalted(2, "node-b", [Halt(2, 7), Halt(3, 7)], "node-b:5054"));
        Assert.Equal(["node-a", "node-b"], Names(Expect<WorldAssignment>(nodes[0])));

        var (other, others, _) = TrainingWith("""
            actortrain.min-nodes = 4
            actortrain.elastic.regroup-timeout = 1s
            """, "node-a", "node-b", "node-c", "node-d");
        others[2].Send(other, new GenerationBroken(1, "node-c", "connection reset", ""));
        foreach (var n in others) Expect<Regroup>(n);
        others[2].Send(other, new NodeHalted(2, "node-c", [Halt(4, 7), Halt(5, 7)], "node-c:5054"));
        others[3].Send(other, new NodeHalted(2, "node-d", [Halt(6, 7), Halt(7, 7)], "node-d:5054"));
        others[2].ExpectNoMsg(TimeSpan.FromSeconds(2));
        Assert.Equal("quorum-lost", Status(other).Phase);
    }

    [Fact]
    public void Coordinator_must_let_a_leaving_node_go_after_a_step_every_replica_agrees_on()
    {
        var (coordinator, nodes, _) = TrainingWith("actortrain.min-nodes = 3", "node-a", "node-b", "node-c");
        var (a, b, c) = (nodes[0], nodes[1], nodes[2]);

        c.Send(coordinator, new NodeLeaving("node-c", "SIGTERM"));
        foreach (var n in nodes) Assert.True(Expect<Regroup>(n).Graceful);
        a.Send(coordinator, new NodeHalted(2, "node-a", [Halt(0, 9), Halt(1, 9)], "node-a:5054"));
        b.Send(coordinator, new NodeHalted(2, "node-b", [Halt(2, 9), Halt(3, 9)], "node-b:5054"));
        c.Send(coordinator, new NodeHalted(2, "node-c", [Halt(4, 9), Halt(5, 9)], "node-c:5054"));

        Assert.Equal(0, Expect<EndRun>(c).ExitCode);
        var world = Expect<WorldAssignment>(a);
        Assert.Equal(["node-a", "node-b"], Names(world));
        Assert.Equal(9, world.Resume.Position.GlobalStep);
        Expect<WorldAssignment>(b);
    }

    [Fact]
    public void Coordinator_must_ignore_a_NodeFailed_from_anyone_but_the_registered_node()
    {
        var (coordinator, a, b, world) = Training();
        var stranger = Node();

        // A stranger naming a member, and a member naming another: neither ends the run.
        stranger.Send(coordinator, new NodeFailed("node-b", "forged"));
        a.Send(coordinator, new NodeFailed("node-b", "forged by a member"));
        stranger.Send(coordinator, new NodeFailed("node-x", "not registered at all"));

        a.ExpectNoMsg(TestConfig.Quiet);
        b.ExpectNoMsg(TestConfig.Quiet);
        // The run goes on: the epoch completes with the real nodes' reports.
        a.Send(coordinator, Epoch(world.Generation, "node-a", 1));
        b.Send(coordinator, Epoch(world.Generation, "node-b", 1));
        ExpectEpochRecorded(a, 1);
        Assert.Equal(new StartEpoch(world.Generation, 2), Expect<StartEpoch>(a));
    }

    [Fact]
    public void Coordinator_must_ignore_node_reports_from_a_sender_that_is_not_the_named_node()
    {
        var (coordinator, a, b, world) = Training();
        var stranger = Node();

        // A forged epoch report for node-b must not complete the epoch.
        a.Send(coordinator, Epoch(world.Generation, "node-a", 1));
        stranger.Send(coordinator, Epoch(world.Generation, "node-b", 1));
        stranger.Send(coordinator, new GenerationBroken(world.Generation, "node-b", "forged", "node-a"));
        a.ExpectNoMsg(TestConfig.Quiet);

        b.Send(coordinator, Epoch(world.Generation, "node-b", 1));
        ExpectEpochRecorded(a, 1);
        Assert.Equal(new StartEpoch(world.Generation, 2), Expect<StartEpoch>(a));
    }

    [Fact]
    public void Coordinator_must_end_the_run_when_a_node_actor_stops_during_training_and_elastic_is_off()
    {
        var (_, a, b, _) = Training("actortrain.elastic.enabled = off");

        seed.Kit.Sys.Stop(b.Ref);

        var end = Expect<EndRun>(a);
        Assert.Equal(3, end.ExitCode);
        Assert.Contains("node-b", end.Reason);
        Assert.Contains("actortrain.elastic.enabled", end.Reason);
    }

    [Fact]
    public void Coordinator_must_end_the_run_on_a_non_finite_gradient_only_when_told_to_fail()
    {
        var (skipping, a, _, _) = Training();
        a.Send(skipping, new NonFiniteGradientReported(1, 7, 0, "node-a", 3));
        a.ExpectNoMsg(TestConfig.Quiet);

        var (failing, c, d, _) = Training("actortrain.sync.non-finite-gradients = fail");
        c.Send(failing, new NonFiniteGradientReported(1, 7, 0, "node-a", 3));

        Assert.Equal(4, Expect<EndRun>(c).ExitCode);
        Assert.Contains("rank 0", Expect<EndRun>(d).Reason);
    }

    [Fact]
    public void Coordinator_must_answer_a_late_registration_retry_of_a_node_in_the_world()
    {
        // A node retries registering until it hears back; a retry already in flight when the world forms must not refuse it.
        var (coordinator, a, _, _) = Training();

        a.Send(coordinator, Registration("node-a"));

        Assert.Equal("node-a", Expect<NodeRegistered>(a).NodeName);
    }

    [Fact]
    public void Coordinator_must_refuse_a_new_node_while_training_when_elastic_is_off()
    {
        var (coordinator, a, _, _) = Training("actortrain.elastic.enabled = off");
        var late = Node();

        late.Send(coordinator, Registration("node-c"));

        var refusal = Expect<RegistrationRefused>(late).Reason;
        Assert.Contains("already running", refusal);
        Assert.Contains("actortrain.elastic.enabled", refusal);
        a.ExpectNoMsg(TestConfig.Quiet);
    }

    [Fact]
    public void Coordinator_must_end_the_run_when_min_nodes_do_not_register_in_time()
    {
        var coordinator = StartCoordinator(Settings("actortrain.startup-timeout = 1s"));
        var a = Node();

        a.Send(coordinator, Registration("node-a"));
        Expect<NodeRegistered>(a);

        var end = Expect<EndRun>(a);
        Assert.Equal(2, end.ExitCode);
        Assert.Contains("startup-timeout", end.Reason);
    }

    [Fact]
    public void Coordinator_must_forget_a_node_that_stops_before_the_world_forms()
    {
        var coordinator = StartCoordinator(Settings());
        var (gone, a, b) = (Node(), Node(), Node());
        gone.Send(coordinator, Registration("node-gone", fingerprint: "fp-old"));
        Expect<NodeRegistered>(gone);

        seed.Kit.Sys.Stop(gone.Ref);
        // Once forgotten, its model no longer binds the next nodes.
        seed.Kit.AwaitAssert(() =>
        {
            a.Send(coordinator, Registration("node-a"));
            Assert.Equal(1, Expect<NodeRegistered>(a).NodesRegistered);
        }, TestConfig.Timeout);
        b.Send(coordinator, Registration("node-b"));

        Assert.Equal(2, Expect<NodeRegistered>(b).NodesRegistered);
        Assert.Equal(["node-a", "node-b"], Expect<WorldAssignment>(b).Nodes.Select(n => n.NodeName));
    }

    [Fact]
    public void Coordinator_must_regroup_the_survivors_of_a_lost_node_from_the_furthest_replica()
    {
        var (coordinator, nodes, first) = TrainingWith("actortrain.min-nodes = 3", "node-a", "node-b", "node-c");
        var (a, b, c) = (nodes[0], nodes[1], nodes[2]);
        Assert.Equal([0, Trainers, 2 * Trainers], first.Nodes.Select(n => n.FirstRank));

        seed.Kit.Sys.Stop(b.Ref);

        foreach (var survivor in new[] { a, c })
        {
            var regroup = Expect<Regroup>(survivor);
            Assert.Equal((1L, 2L, false), (regroup.Generation, regroup.NextGeneration, regroup.Graceful));
            Assert.Contains("node-b", regroup.Reason);
        }
        // Step 30 is the furthest. Ranks 1 and 4 had computed step 31 when its reduction was cut
        // off (in flight); rank 5 (node-c's second trainer) completed step 30 cleanly: the source.
        a.Send(coordinator, new NodeHalted(2, "node-a", [Halt(0, 29), Halt(1, 30, inFlight: true)], "node-a:5054"));
        c.Send(coordinator, new NodeHalted(2, "node-c",
            [Halt(4, 30, inFlight: true), Halt(5, 30, lossSum: 12.5, lossCount: 30, skipped: 1, optimizerBytes: 4096)], "node-c:5054"));

        var world = Expect<WorldAssignment>(a);
        Assert.Equal(2, world.Generation);
        Assert.Equal(["node-a", "node-c"], Names(world));
        Assert.Equal([0, Trainers], world.Nodes.Select(n => n.FirstRank));
        Assert.Equal(2 * Trainers, world.WorldSize);
        Assert.Equal(["node-a:5054", "node-c:5054"], world.Nodes.Select(n => n.DataPlaneEndpoint));
        // Old rank 5 is node-c's trainer 1, rank Trainers + 1 in the new world.
        Assert.Equal(new ResumePoint(Trainers + 1, new TrainingPosition(30, 1, 30 * 16, 30, false, 12.5, 30, 1), 4096, ""), world.Resume);
        Assert.Equal(1, Assert.Single(world.History.Generations).Generation);
        Assert.Equal(world.Resume, Expect<WorldAssignment>(c).Resume);
        b.ExpectNoMsg(TestConfig.Quiet);

        a.Send(coordinator, new NodeReady(2, "node-a"));
        c.Send(coordinator, new NodeReady(2, "node-c"));
        Assert.Equal(new StartEpoch(2, 1), ExpectStarted(a));
        Assert.Equal(new StartEpoch(2, 1), ExpectStarted(c));

        var report = FinishTwoEpochs(coordinator, 2, [(a, "node-a"), (c, "node-c")]);
        Assert.Equal(2 * Trainers, report.GetProperty("world_size").GetInt32());
        var generations = report.GetProperty("generations").EnumerateArray().ToList();
        Assert.Equal([1L, 2L], generations.Select(g => g.GetProperty("generation").GetInt64()));
        Assert.Equal(["node-a", "node-b", "node-c"], generations[0].GetProperty("members").EnumerateArray().Select(m => m.GetString()));
        Assert.Equal(["node-a", "node-c"], generations[1].GetProperty("members").EnumerateArray().Select(m => m.GetString()));
        Assert.Equal(30, generations[1].GetProperty("start_step").GetInt64());
        Assert.Contains("node-b", generations[1].GetProperty("reason").GetString());
        Assert.Equal(0, generations[0].GetProperty("steps_redone").GetInt32());
        Assert.Equal(1, generations[1].GetProperty("steps_redone").GetInt32());
        Assert.Equal(1, report.GetProperty("steps_redone").GetInt32());
    }

    [Fact]
    public void Coordinator_must_go_on_with_the_next_epoch_when_the_furthest_replica_had_finished_its_epoch()
    {
        var (coordinator, a, b, _) = Training();

        seed.Kit.Sys.Stop(b.Ref);
        Expect<Regroup>(a);
        a.Send(coordinator, new NodeHalted(2, "node-a",
            [Halt(0, 50, finished: true, lossSum: 20, lossCount: 50), Halt(1, 50, finished: true, lossSum: 20, lossCount: 50)], "node-a:5054"));

        // The epoch the survivors finished (its report never came) enters the history first.
        Assert.Equal(new EpochRecord(1, 50, 0.4, 0, null), Assert.Single(Expect<HistoryUpdate>(a).History.Epochs));
        var world = Expect<WorldAssignment>(a);
        Assert.Equal(["node-a"], Names(world));
        Assert.Equal((0, 1, true, 50L), (world.Resume.SourceRank, world.Resume.Position.Epoch, world.Resume.Position.EpochFinished, world.Resume.Position.GlobalStep));
        a.Send(coordinator, new NodeReady(2, "node-a"));
        Assert.Equal(new StartEpoch(2, 2), ExpectStarted(a));
    }

    [Fact]
    public void Coordinator_must_leave_out_a_node_that_does_not_answer_the_regroup_in_time()
    {
        var (coordinator, a, b, _) = Training("actortrain.elastic.regroup-timeout = 1s");

        a.Send(coordinator, new GenerationBroken(1, "node-a", "step 7 waited past actortrain.sync.step-timeout", ""));
        Assert.False(Expect<Regroup>(a).Graceful);
        Expect<Regroup>(b);
        a.Send(coordinator, new NodeHalted(2, "node-a", [Halt(0, 7), Halt(1, 7)], "node-a:5054"));

        var end = Expect<LeftOut>(b);
        Assert.Equal(2, end.Generation);
        Assert.Contains("regroup-timeout", end.Reason);
        var world = Expect<WorldAssignment>(a);
        Assert.Equal(["node-a"], Names(world));
        Assert.Equal(Trainers, world.WorldSize);
        // The silent node's actor lives in the coordinator's process here: leaving it out must not down the coordinator's own cluster node.
        var self = Akka.Cluster.Cluster.Get(seed.Kit.Sys);
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(Akka.Cluster.MemberStatus.Up, self.SelfMember.Status);
            Thread.Sleep(100);
        }
        a.Send(coordinator, new NodeReady(2, "node-a"));
        Assert.Equal(new StartEpoch(2, 1), ExpectStarted(a));
    }

    [Fact]
    public void Coordinator_must_wait_for_a_suspect_only_a_short_grace_once_the_others_have_answered()
    {
        var (coordinator, nodes, _) = TrainingWith("""
            actortrain.min-nodes = 3
            actortrain.elastic.regroup-timeout = 20s
            """, "node-a", "node-b", "node-c");
        var (a, b, c) = (nodes[0], nodes[1], nodes[2]);

        a.Send(coordinator, new GenerationBroken(1, "node-a", "connection reset by peer", "node-b"));
        foreach (var n in nodes) Assert.Contains("node-b", Expect<Regroup>(n).Reason);
        a.Send(coordinator, new NodeHalted(2, "node-a", [Halt(0, 9), Halt(1, 9)], "node-a:5054"));
        var clock = Stopwatch.StartNew();
        c.Send(coordinator, new NodeHalted(2, "node-c", [Halt(4, 9), Halt(5, 9)], "node-c:5054"));

        // node-b (the suspect) stays silent: the regroup completes after the grace, long before regroup-timeout.
        var world = a.ExpectMsg<WorldAssignment>(TimeSpan.FromSeconds(8));
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(8));
        Assert.Equal(["node-a", "node-c"], Names(world));
        var end = Expect<LeftOut>(b);
        Assert.Equal(2, end.Generation);
        Assert.Contains("data-plane", end.Reason);
        Assert.Equal(2, Expect<WorldAssignment>(c).Generation);
    }

    [Fact]
    public void Coordinator_must_admit_a_node_registering_mid_run_at_a_graceful_regroup()
    {
        var (coordinator, a, b, _) = Training();
        var c = Node();

        c.Send(coordinator, Registration("node-c"));

        Assert.Equal(new NodeRegistered("node-c", 3, 2), Expect<NodeRegistered>(c));
        foreach (var member in new[] { a, b })
        {
            var regroup = Expect<Regroup>(member);
            Assert.Equal((1L, 2L, true), (regroup.Generation, regroup.NextGeneration, regroup.Graceful));
            Assert.Contains("node-c", regroup.Reason);
        }
        c.ExpectNoMsg(TestConfig.Quiet);
        a.Send(coordinator, new NodeHalted(2, "node-a", [Halt(0, 20), Halt(1, 20)], "node-a:5054"));
        b.Send(coordinator, new NodeHalted(2, "node-b", [Halt(2, 20), Halt(3, 20)], "node-b:5054"));

        var world = Expect<WorldAssignment>(c);
        Assert.Equal(2, world.Generation);
        Assert.Equal(["node-a", "node-b", "node-c"], Names(world));
        Assert.Equal([0, Trainers, 2 * Trainers], world.Nodes.Select(n => n.FirstRank));
        Assert.Equal(3 * Trainers, world.WorldSize);
        Assert.Equal("node-c:4054", world.Nodes[2].DataPlaneEndpoint);
        Assert.Equal((0, 20L), (world.Resume.SourceRank, world.Resume.Position.GlobalStep));
        Expect<WorldAssignment>(a);
        Expect<WorldAssignment>(b);
        foreach (var (probe, name) in new[] { (a, "node-a"), (b, "node-b"), (c, "node-c") }) probe.Send(coordinator, new NodeReady(2, name));
        Assert.Equal(new StartEpoch(2, 1), ExpectStarted(c));
    }

    [Fact]
    public void Coordinator_must_refuse_a_node_registering_mid_run_once_max_nodes_is_reached()
    {
        var (coordinator, a, b, _) = Training("actortrain.max-nodes = 2");
        var late = Node();

        late.Send(coordinator, Registration("node-c"));

        Assert.Contains("actortrain.max-nodes", Expect<RegistrationRefused>(late).Reason);
        // A refused node changes nothing: the world trains on.
        a.ExpectNoMsg(TestConfig.Quiet);
        b.ExpectNoMsg(TimeSpan.Zero);
        a.Send(coordinator, Epoch(1, "node-a", 1));
        b.Send(coordinator, Epoch(1, "node-b", 1));
        ExpectEpochRecorded(a, 1);
        Assert.Equal(new StartEpoch(1, 2), Expect<StartEpoch>(a));
    }

    [Fact]
    public void Coordinator_must_end_the_run_when_fewer_nodes_survive_than_min_surviving_nodes()
    {
        var (coordinator, a, b, _) = Training("actortrain.elastic.min-surviving-nodes = 2");

        seed.Kit.Sys.Stop(b.Ref);
        Expect<Regroup>(a);
        a.Send(coordinator, new NodeHalted(2, "node-a", [Halt(0, 5), Halt(1, 5)], "node-a:5054"));

        var end = Expect<EndRun>(a);
        Assert.Equal(3, end.ExitCode);
        Assert.Contains("actortrain.elastic.min-surviving-nodes", end.Reason);
    }

    [Fact]
    public void Coordinator_must_take_over_a_run_from_the_nodes_that_rejoin_with_their_state()
    {
        var coordinator = StartCoordinator(Settings("actortrain.elastic.regroup-timeout = 20s"));
        var (a, b) = (Node(), Node());
        // What the nodes of generation 2 hold from the coordinator they lost: its plan (not this one's settings) and history.
        var plan = new TrainingPlan(3, 8, 7, 10, 1 << 20, false, 64 * 1024, "tcp", new byte[32], "none", 1);
        var history = new RunHistory(
            [new GenerationRecord(1, ["node-a", "node-b", "node-c"], 6, 0, "start", 0, 0), new GenerationRecord(2, ["node-a", "node-b"], 4, 60, "node node-c was lost", 1, 1.5)],
            [new EpochRecord(1, 50, 0.4, 0, new() { ["test_accuracy"] = 0.9 })], 12);

        // The last world: node-a and node-b, cluster members (their probes live in the test cluster), and node-c,
        // which died with the old coordinator and is no member any more: nobody waits for it.
        var self = Akka.Cluster.Cluster.Get(seed.Kit.Sys).SelfAddress;
        WorldNode Member(string name, IActorRef node, int firstRank) =>
            new(name, node.Path.ToStringWithAddress(self), "e", firstRank, Trainers, ["cpu", "cpu"], $"{name}:4054");
        WorldNode[] lastWorld = [Member("node-a", a.Ref, 0), Member("node-b", b.Ref, Trainers),
            new("node-c", "akka.tcp://actortrain@gone:4053/user/node", "e", 2 * Trainers, Trainers, ["cpu", "cpu"], "gone:4054")];
        a.Send(coordinator, Registration("node-a") with { Rejoin = new NodeRejoin(2, [Halt(0, 70, epoch: 2, stepsInEpoch: 20), Halt(1, 70, epoch: 2, stepsInEpoch: 20)], history, plan, lastWorld) });
        Expect<NodeRegistered>(a);
        a.ExpectNoMsg(TestConfig.Quiet);
        b.Send(coordinator, Registration("node-b") with { Rejoin = new NodeRejoin(2, [Halt(2, 71, epoch: 2, stepsInEpoch: 21), Halt(3, 71, epoch: 2, stepsInEpoch: 21)], history, plan, lastWorld) });
        Expect<NodeRegistered>(b);

        // Every member of the last generation is back: no waiting for regroup-timeout (20 s, beyond Expect's timeout).
        var world = Expect<WorldAssignment>(a);
        Assert.Equal(3, world.Generation);
        Assert.Equal(["node-a", "node-b"], Names(world));
        Assert.Equal((3, 8, 7, 10, 1L << 20, 64 * 1024), (world.Plan.Epochs, world.Plan.BatchSize, world.Plan.Seed, world.Plan.LogInterval,
            world.Plan.BucketSizeBytes, world.Plan.ChunkSizeBytes));
        Assert.Equal((Trainers, 71L, 2, 21L), (world.Resume.SourceRank, world.Resume.Position.GlobalStep, world.Resume.Position.Epoch, world.Resume.Position.StepsInEpoch));
        Assert.Equal([1L, 2L], world.History.Generations.Select(g => g.Generation));
        Expect<WorldAssignment>(b);
        a.Send(coordinator, new NodeReady(3, "node-a"));
        b.Send(coordinator, new NodeReady(3, "node-b"));
        Assert.Equal(new StartEpoch(3, 2), ExpectStarted(a));
        Assert.Equal(new StartEpoch(3, 2), ExpectStarted(b));

        var report = FinishTwoEpochs(coordinator, 3, [(a, "node-a"), (b, "node-b")], fromEpoch: 2, epochs: 3);
        Assert.Equal([1, 2, 3], report.GetProperty("epoch_history").EnumerateArray().Select(e => e.GetProperty("epoch").GetInt32()));
        Assert.Equal(0.4, report.GetProperty("epoch_history")[0].GetProperty("mean_loss").GetDouble());
        Assert.Equal(3, report.GetProperty("epochs").GetInt32());
        var generations = report.GetProperty("generations").EnumerateArray().ToList();
        Assert.Equal([1L, 2L, 3L], generations.Select(g => g.GetProperty("generation").GetInt64()));
        Assert.Equal(71, generations[2].GetProperty("start_step").GetInt64());
        Assert.Contains("coordinator", generations[2].GetProperty("reason").GetString());
        Assert.Equal(1, report.GetProperty("steps_redone").GetInt32());
        Assert.True(report.GetProperty("wall_seconds").GetDouble() >= 12);
    }

    [Fact]
    public void Coordinator_must_report_a_hanging_step_naming_the_bucket_and_the_rank_it_waits_for()
    {
        var (coordinator, a, b, _) = Training("actortrain.elastic.hang-report-after = 1s");
        var log = Node();
        seed.Kit.Sys.EventStream.Subscribe(log.Ref, typeof(Warning));
        try
        {
            // Ranks 0, 1 and 3 have waited 4 s in bucket 3 of step 12; rank 2 on node-b is still at step 11.
            a.Send(coordinator, new NodeProgress(1, "node-a", 1, [new RankProgress(0, 12, 40, 30, 4000, 3), new RankProgress(1, 12, 40, 30, 4000, 3)]));
            b.Send(coordinator, new NodeProgress(1, "node-b", 1, [new RankProgress(2, 11, 40, 30, 20, -1), new RankProgress(3, 12, 40, 30, 4000, 3)]));

            var warning = log.FishForMessage<Warning>(w => w.LogSource.Contains(coordinator.Path.Name + "#", StringComparison.Ordinal)
                || w.LogSource.EndsWith(coordinator.Path.Name, StringComparison.Ordinal), TestConfig.Timeout);
            var text = warning.Message.ToString()!;
            Assert.Contains("Step 12", text);
            Assert.Contains("bucket(s) 3", text);
            Assert.Contains("rank 2 on node node-b (at step 11)", text);
            Assert.DoesNotContain("rank 3 on node", text);
        }
        finally
        {
            seed.Kit.Sys.EventStream.Unsubscribe(log.Ref);
        }
    }

    /// <summary>What <see cref="RegroupProtocol"/> reads from the cluster's state for the coordinator, on the seed that joined itself.</summary>
    [Fact]
    public void Coordinator_must_read_the_members_up_the_members_seen_and_those_still_in_the_cluster_from_the_cluster_state()
    {
        var cluster = Akka.Cluster.Cluster.Get(seed.Kit.Sys);
        var gone = new Address("akka.tcp", "actortrain", "gone", 4053);

        Assert.Equal([cluster.SelfAddress], RegroupProtocol.Up(cluster.State));
        Assert.True(RegroupProtocol.Visible(cluster.State)(cluster.SelfAddress));
        Assert.False(RegroupProtocol.Visible(cluster.State)(gone));
        Assert.True(RegroupProtocol.InCluster(cluster.State, cluster.SelfAddress));
        Assert.False(RegroupProtocol.InCluster(cluster.State, gone));
        Assert.Empty(RegroupProtocol.Up(new Akka.Cluster.ClusterEvent.CurrentClusterState()));
    }
}
