using ActorTrain.Cluster.Protocol;
using Akka.Actor;

namespace ActorTrain.TrainerActors.Tests.Actors;

/// <summary>Loopback addresses and a generation of nodes at them, for the node's membership and cluster-watch tests.</summary>
internal static class TestWorlds
{
    public static Address At(int port) => new("akka.tcp", "actortrain", "127.0.0.1", port);

    public static WorldAssignment World(params Address[] nodes) =>
        new(1, nodes.Select((a, i) => new WorldNode($"n{a.Port}", $"{a}/user/node", $"{a}/user/actortrain-endpoint", i, 1, ["cpu"], $"127.0.0.1:{a.Port + 100}")).ToArray(),
            nodes.Length, new TrainingPlan(1, 8, 42, 10, 1 << 20, false, 1 << 16, "tcp", [], "none", 1),
            new ResumePoint(0, new TrainingPosition(0, 1, 0, 0, false, 0, 0, 0), 0, ""), RunHistory.Empty);
}
