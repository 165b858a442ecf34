using System.Net;
using System.Net.Sockets;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.Cluster.Transport;
using ActorTrain.Sync.Transport;
using ActorTrain.TrainerActors.DataPlane;
using Akka.TestKit;

namespace ActorTrain.TrainerActors.Tests.Actors;

/// <summary>The node's data plane: what it opens for a world, and the errors that name what and where.</summary>
public sealed class NodeDataPlaneSpec : Akka.TestKit.Xunit2.TestKit
{
    private readonly TestProbe _endpoint;
    private readonly TestProbe _node;

    public NodeDataPlaneSpec() : base(ActorSpecConfig.Node(Path.GetTempPath()), "actortrain-data-plane-spec")
    {
        _endpoint = CreateTestProbe();
        _node = CreateTestProbe();
    }

    private NodeDataPlane DataPlane(string hocon = "") =>
        new(Sys, ActorTrainSettings.Create(ActorSpecConfig.Node(Path.GetTempPath(), hocon)).Sync, _endpoint.Ref, new ChunkMailbox(1 << 20), new NodeMetrics("node-a"));

    private static WorldAssignment World(string transport, int nodes) =>
        new(3, Enumerable.Range(0, nodes).Select(i => new WorldNode($"n{i}", $"akka.tcp://actortrain@127.0.0.1:{4000 + i}/user/node",
                $"akka.tcp://actortrain@127.0.0.1:{4000 + i}/user/actortrain-endpoint", i, 1, ["cpu"], $"127.0.0.1:{5000 + i}")).ToArray(),
            nodes, new TrainingPlan(1, 8, 42, 10, 1 << 20, false, 1 << 16, transport, [], "none", 1),
            new ResumePoint(0, new TrainingPosition(0, 1, 0, 0, false, 0, 0, 0), 0, ""), RunHistory.Empty);

    [Theory]
    [InlineData("tcp")]
    [InlineData("akka")]
    public void A_world_of_one_node_gets_no_ring_and_its_endpoint_learns_the_worlds_peers(string transport)
    {
        using var dataPlane = DataPlane();
        Assert.Matches(@"^127\.0\.0\.1:\d+$", dataPlane.Endpoint);

        dataPlane.Connect(World(transport, 1), 0, _node.Ref, CancellationToken.None);

        Assert.Equal(new RingReady(3, 0, null, null), _node.ExpectMsg<RingReady>(ActorSpecConfig.Timeout));
        var setWorld = _endpoint.ExpectMsg<GradientEndpointActor.SetWorld>(ActorSpecConfig.Timeout);
        Assert.Equal(3, setWorld.Generation);
        Assert.Equal(4000, Assert.Single(setWorld.PeerAddresses).Port);
        // Akka chunks are accepted at the plan's size only when Akka carries the ring.
        Assert.Equal(transport == "akka" ? 1 << 16 : 0, setWorld.MaxPayloadBytes);
    }

    [Fact]
    public void A_world_with_an_unknown_transport_is_refused_naming_it()
    {
        using var dataPlane = DataPlane();

        var e = Assert.Throws<ArgumentException>(() => dataPlane.Connect(World("udp", 2), 0, _node.Ref, CancellationToken.None));

        Assert.Contains("\"udp\"", e.Message);
        Assert.Contains("generation 3", e.Message);
    }

    [Fact]
    public void A_tcp_ring_whose_peer_address_is_malformed_fails_naming_the_node()
    {
        using var dataPlane = DataPlane();
        var world = World("tcp", 2);
        world.Nodes[1] = world.Nodes[1] with { DataPlaneEndpoint = "no-port-here" };

        dataPlane.Connect(world, 0, _node.Ref, CancellationToken.None);

        var ready = _node.ExpectMsg<RingReady>(ActorSpecConfig.Timeout);
        Assert.Null(ready.Ring);
        Assert.Contains("cannot connect the TCP data plane of generation 3", ready.Error);
        Assert.Contains("node n1 sent a malformed data-plane address \"no-port-here\"", ready.Error);
    }

    [Fact]
    public void A_taken_data_plane_port_is_an_error_naming_the_port_and_the_setting()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;

        var e = Assert.Throws<InvalidOperationException>(() => DataPlane($"actortrain.sync.tcp-port = {port}"));

        Assert.Contains($"127.0.0.1:{port}", e.Message);
        Assert.Contains("actortrain.sync.tcp-port", e.Message);
    }
}
