using System.Text.Json;
using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
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
            $"akka.tcp://actortrain@{name}:4053/user/actortrain-endpoint", Enumerable.Repeat("cpu", trainers).ToArray(), $"{name}:4054", null);

    private static T Expect<T>(TestProbe probe) => probe.ExpectMsg<T>(TestConfig.Timeout);

    private static EpochCompleted Epoch(long generation, string node, int epoch, double lossSum = 10, long lossCount = 100, double accuracy = -1) =>
        new(generation, node, epoch, Steps: 50, lossSum, lossCount, SkippedSteps: 0, accuracy);

    private static NodeFinished Finished(long generation, string node, int firstRank, string checksum = "sha256:same", string? model = null) =>
        new(generation, node, Enumerable.Range(firstRank, Trainers).Select(r => new TrainerSummary(r, checksum, 100, 10 + r, 1, 2, 13 + r)).ToArray(), model,
            firstRank == 0 ? [new LossSample(20, 2.0), new LossSample(40, 1.5)] : []);

    /// <summary>Two nodes registered, a world formed and both ready: the coordinator has sent StartEpoch(1).</summary>
    private (IActorRef Coordinator, TestProbe A, TestProbe B, WorldAssignment World) Training(string hocon = "")
    {
        var coordinator = StartCoordinator(Settings(hocon));
        var (a, b) = (Node(), Node());
        a.Send(coordinator, Registration("node-a"));
        Expect<NodeRegistered>(a);
        b.Send(coordinator, Registration("node-b"));
        Expect<NodeRegistered>(b);
        var world = Expect<WorldAssignment>(a);
        Expect<WorldAssignment>(b);
        a.Send(coordinator, new NodeReady(world.Generation, "node-a"));
        b.Send(coordinator, new NodeReady(world.Generation, "node-b"));
        Assert.Equal(new StartEpoch(world.Generation, 1), Expect<StartEpoch>(a));
        Assert.Equal(new StartEpoch(world.Generation, 1), Expect<StartEpoch>(b));
        return (coordinator, a, b, world);
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

        Assert.Equal(new StartEpoch(1, 1), Expect<StartEpoch>(a));
        Assert.Equal(new StartEpoch(1, 1), Expect<StartEpoch>(b));
    }

    [Fact]
    public void Coordinator_must_run_every_epoch_then_finish_end_the_run_and_write_the_report()
    {
        var (coordinator, a, b, world) = Training();

        a.Send(coordinator, Epoch(1, "node-a", 1, lossSum: 30, lossCount: 100, accuracy: 0.91));
        b.Send(coordinator, Epoch(1, "node-b", 1, lossSum: 10, lossCount: 100));
        Assert.Equal(new StartEpoch(1, 2), Expect<StartEpoch>(a));
        Assert.Equal(new StartEpoch(1, 2), Expect<StartEpoch>(b));
        a.Send(coordinator, Epoch(1, "node-a", 2, lossSum: 12, lossCount: 100, accuracy: 0.97));
        b.Send(coordinator, Epoch(1, "node-b", 2, lossSum: 8, lossCount: 100));
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

        Assert.Equal(new StartEpoch(1, 2), Expect<StartEpoch>(a));
    }

    [Fact]
    public void Coordinator_must_end_the_run_on_every_node_when_one_fails()
    {
        var (coordinator, a, b, _) = Training();

        b.Send(coordinator, new NodeFailed("node-b", "CUDA out of memory"));

        var end = Expect<EndRun>(a);
        Assert.NotEqual(0, end.ExitCode);
        Assert.Contains("node-b", end.Reason);
        Assert.Contains("CUDA out of memory", end.Reason);
        Assert.NotEqual(0, Expect<EndRun>(b).ExitCode);
    }

    [Fact]
    public void Coordinator_must_end_the_run_when_a_node_actor_stops_during_training()
    {
        var (_, a, b, _) = Training();

        seed.Kit.Sys.Stop(b.Ref);

        Assert.Equal(3, Expect<EndRun>(a).ExitCode);
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
    public void Coordinator_must_refuse_a_new_node_while_training()
    {
        var (coordinator, _, _, _) = Training();
        var late = Node();

        late.Send(coordinator, Registration("node-c"));

        Assert.Contains("already running", Expect<RegistrationRefused>(late).Reason);
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
}
