using System.Net;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.Sync.Transport.Tcp;
using ActorTrain.TrainerActors.Actors;
using ActorTrain.TrainerActors.Checkpoints;
using Akka.Actor;
using Akka.TestKit;

namespace ActorTrain.TrainerActors.Tests.Actors;

/// <summary>
/// A real node actor with real trainers (TorchSharp, a tiny model); only the coordinator is a
/// probe that plays its side of the protocol.
/// </summary>
[Collection(TorchRandomCollection.Name)]
public sealed class NodeActorSpec : Akka.TestKit.Xunit2.TestKit
{
    private readonly string _outDir;
    private readonly TestProbe _coordinator;

    public NodeActorSpec() : this(Directory.CreateTempSubdirectory("actortrain-node-spec-").FullName) { }

    private NodeActorSpec(string outDir) : base(ActorSpecConfig.Node(outDir), "actortrain-node-spec")
    {
        _outDir = outDir;
        _coordinator = CreateTestProbe();
    }

    private IActorRef StartNode() =>
        Sys.ActorOf(NodeActor.Props(ActorTrainSettings.Create(Sys.Settings.Config), new TinyJob(), _coordinator.Ref, new NodeMetrics("node-a"), new RecordingSink()), "node");

    /// <summary>The next message of type <typeparamref name="T"/>; the node's periodic progress reports in between are skipped.</summary>
    private T Next<T>() => Assert.IsType<T>(_coordinator.FishForMessage(m => m is not NodeProgress, ActorSpecConfig.Timeout));

    private RegisterNode Registered()
    {
        var registration = Next<RegisterNode>();
        _coordinator.Reply(new NodeRegistered(registration.NodeName, 1, 1));
        return registration;
    }

    private static WorldNode Member(RegisterNode r, int firstRank) =>
        new(r.NodeName, r.NodeActorPath, r.EndpointPath, firstRank, r.TrainerCount, r.Devices, r.DataPlaneEndpoint);

    private static WorldAssignment World(long generation, string transport, params WorldNode[] nodes) =>
        new(generation, nodes, nodes.Sum(n => n.TrainerCount),
            new TrainingPlan(Epochs: 1, BatchSize: 8, Seed: 42, LogInterval: 1000, BucketSizeBytes: 1 << 20, FailOnNonFinite: false,
                ChunkSizeBytes: 64 * 1024, transport, DataPlaneToken: Enumerable.Range(1, 16).Select(i => (byte)i).ToArray(), "none", AccumulationSteps: 1),
            new ResumePoint(0, new TrainingPosition(0, 1, 0, 0, false, 0, 0, 0), 0, ""), RunHistory.Empty);

    [Fact]
    public void Node_must_register_train_a_world_of_one_write_the_checkpoint_it_was_told_about_and_halt_on_regroup()
    {
        var node = StartNode();
        var registration = Registered();
        Assert.Equal("tiny", registration.JobId);
        Assert.Equal(1, registration.TrainerCount);
        Assert.Null(registration.Rejoin);

        _coordinator.Send(node, World(1, "akka", Member(registration, 0)));
        Assert.Equal(new NodeReady(1, "node-a"), Next<NodeReady>());
        // The coordinator's history reaches the trainer by message; the epoch-end checkpoint must carry it.
        var history = new RunHistory([new GenerationRecord(1, ["node-a"], 1, 0, "spec-start", 0, 0)], [], 1.5);
        _coordinator.Send(node, new HistoryUpdate(history));
        _coordinator.Send(node, new StartEpoch(1, 1));

        var epoch = Next<EpochCompleted>();
        Assert.Equal((1L, "node-a", 1), (epoch.Generation, epoch.NodeName, epoch.Epoch));
        Assert.Equal(TinyJob.Samples / 8, epoch.Steps);
        Assert.Equal(TinyJob.Samples / 8, epoch.LossCount);
        Assert.InRange(epoch.Metrics[ActorTrain.TrainerActors.Jobs.TrainingJob.AccuracyMetric], 0, 1);
        var offer = TrainerCheckpoints.Offer(Path.Combine(_outDir, "checkpoints"), "tiny", registration.ModelFingerprint, w => Assert.Fail(w));
        Assert.NotNull(offer);
        Assert.Equal(TinyJob.Samples / 8, offer.State.Position.GlobalStep);
        Assert.Equal("spec-start", Assert.Single(offer.History.Generations).Reason);
        Assert.Equal(1, Assert.Single(offer.History.Epochs).Epoch);

        _coordinator.Send(node, new Regroup(1, 2, Graceful: true, "spec regroup"));
        var halted = Next<NodeHalted>();
        Assert.Equal((2L, "node-a"), (halted.NextGeneration, halted.NodeName));
        var state = Assert.Single(halted.Trainers);
        Assert.Equal(TinyJob.Samples / 8, state.Position.GlobalStep);
        Assert.True(state.Position.EpochFinished);
        Assert.Matches(@"^127\.0\.0\.1:\d+$", halted.DataPlaneEndpoint);
    }

    [Fact]
    public async Task Node_must_set_up_a_tcp_ring_without_resolving_any_akka_gradient_endpoint()
    {
        var node = StartNode();
        var registration = Registered();
        // The other node exists only as a TCP ring peer: its Akka gradient endpoint points nowhere,
        // so a node that tried to resolve it could not get ready (and would fail after 30 s).
        var listener = TcpRingTransport.Listen(IPAddress.Loopback, 0);
        var peerEndpoint = (IPEndPoint)listener.LocalEndpoint;
        var peer = new WorldNode("node-b", "akka.tcp://actortrain@127.0.0.1:9/user/node", "akka.tcp://actortrain@127.0.0.1:9/user/actortrain-endpoint",
            1, 1, ["cpu"], $"127.0.0.1:{peerEndpoint.Port}");
        var world = World(1, "tcp", Member(registration, 0), peer);
        _coordinator.Send(node, world);

        var nodeEndpoint = IPEndPoint.Parse(registration.DataPlaneEndpoint);
        using var timeout = new CancellationTokenSource(ActorSpecConfig.Timeout);
        await using var ring = await TcpRingTransport.ConnectAsync(1, [nodeEndpoint, peerEndpoint], listener, 1, world.Plan.DataPlaneToken,
            world.Plan.ChunkSizeBytes / sizeof(float), timeout.Token);

        Assert.Equal(new NodeReady(1, "node-a"), Next<NodeReady>());
        _coordinator.Send(node, new Regroup(1, 2, Graceful: false, "spec regroup"));
        var halted = Next<NodeHalted>();
        Assert.Equal(2, halted.NextGeneration);
        // A trainer that never took a step reports step -1.
        Assert.Equal(-1, Assert.Single(halted.Trainers).Position.GlobalStep);
        // A fresh listener for the next generation's ring.
        Assert.NotEqual(registration.DataPlaneEndpoint, halted.DataPlaneEndpoint);
    }

    [Fact]
    public void Node_must_report_a_world_that_leaves_it_out_as_a_failure()
    {
        var node = StartNode();
        var registration = Registered();
        var other = Member(registration, 0) with { NodeName = "node-z" };

        _coordinator.Send(node, World(1, "akka", other));

        var failed = Next<NodeFailed>();
        Assert.Equal("node-a", failed.NodeName);
        Assert.Contains("does not include this node", failed.Reason);
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing && Directory.Exists(_outDir)) Directory.Delete(_outDir, recursive: true);
    }
}
