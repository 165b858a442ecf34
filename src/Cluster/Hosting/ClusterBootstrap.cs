using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Cluster.Tools.Singleton;
using Akka.Configuration;

namespace ActorTrain.Cluster.Hosting;

/// <summary>Starts a node's ActorSystem and, on seed-role nodes, the coordinator singleton.</summary>
public static class ClusterBootstrap
{
    public const string SystemName = "actortrain";
    public const string SeedRole = "seed";
    public const string TrainerRole = "trainer";

    /// <summary>
    /// Creates the ActorSystem from a fully layered config (see <see cref="ActorTrainSettings.DefaultConfig"/>),
    /// the coordinator singleton manager where this node has the seed role, and a proxy to it on every node.
    /// </summary>
    public static (ActorSystem System, IActorRef CoordinatorProxy) Start(Config config, ActorTrainSettings settings)
    {
        var system = ActorSystem.Create(SystemName, config);
        var roles = Akka.Cluster.Cluster.Get(system).SelfRoles;
        if (roles.Contains(SeedRole))
        {
            system.ActorOf(ClusterSingletonManager.Props(
                    CoordinatorActor.Props(settings),
                    PoisonPill.Instance,
                    ClusterSingletonManagerSettings.Create(system).WithRole(SeedRole).WithSingletonName(CoordinatorActor.SingletonName)),
                "coordinator-singleton");
        }
        var proxy = system.ActorOf(ClusterSingletonProxy.Props(
                "/user/coordinator-singleton",
                ClusterSingletonProxySettings.Create(system).WithRole(SeedRole).WithSingletonName(CoordinatorActor.SingletonName)),
            "coordinator-proxy");
        return (system, proxy);
    }
}
