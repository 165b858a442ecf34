using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Security;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Cluster.Tools.Client;
using Akka.Cluster.Tools.PublishSubscribe;
using Akka.Cluster.Tools.Singleton;
using Akka.Configuration;
using Akka.Event;

namespace ActorTrain.Cluster.Hosting;

/// <summary>Starts a node's ActorSystem and, on seed-role nodes, the coordinator singleton.</summary>
internal static class ClusterBootstrap
{
    public const string SystemName = "actortrain";
    public const string SeedRole = "seed";
    public const string TrainerRole = "trainer";

    /// <summary>
    /// Akka.Cluster.Tools' serializers and settings, present from the start on every node: the
    /// receptionist gossips through distributed pub-sub, and any node must be able to read
    /// (and drop) what it is sent.
    /// </summary>
    public static Config WithClusterToolsDefaults(Config config) => config
        .WithFallback(ClusterClientReceptionist.DefaultConfig())
        .WithFallback(DistributedPubSub.DefaultConfig())
        .WithFallback(ClusterSingleton.DefaultConfig());

    /// <summary>
    /// Creates the ActorSystem from a fully layered config (see <see cref="ActorTrainSettings.DefaultConfig"/>),
    /// the coordinator singleton manager where this node has the seed role, and a proxy to it on every node.
    /// With <c>actortrain.tls.enabled</c> remoting runs TLS with mutual authentication (see
    /// <see cref="NodeTls"/>, found later with <see cref="NodeTls.Of"/>); a certificate problem is a
    /// <see cref="SettingsException"/> naming the key and the file, before anything listens.
    /// </summary>
    /// <param name="output">Where the node's lines for a person go (<see cref="Logging.NodeOutput"/>); null: through Akka's logging.</param>
    /// <remarks>
    /// With actortrain.management on, or a discovery method other than seed-nodes, the node serves
    /// its health checks (<see cref="ManagementEndpoint"/>) and Cluster Bootstrap forms or
    /// joins the cluster (<see cref="NodeManagement"/>); a management port that cannot be bound is
    /// a <see cref="SettingsException"/>, after the system has stopped.
    /// </remarks>
    public static (ActorSystem System, IActorRef CoordinatorProxy) Start(Config config, ActorTrainSettings settings, Logging.INodeLineSink? output = null)
    {
        var system = CreateSystem(SystemName, config.WithFallback(NodeManagement.AkkaConfig(settings.Management, config)), settings.Tls, output);
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
        if (roles.Contains(SeedRole))
        {
            // Lets `status` ask the coordinator from outside the cluster, without joining it; the
            // service passes on GetStatus only.
            ClusterClientReceptionist.Get(system).RegisterService(system.ActorOf(StatusService.Props(proxy), StatusService.Name));
        }
        NodeHealth.Get(system).Attach(proxy, settings.Node.Train);
        if (settings.Management.Runs)
        {
            try
            {
                var endpoint = NodeManagement.Start(system, settings.Management);
                ProgressLine.Info(system, "management endpoint at {0} (health: {1}, {2}){3}", endpoint.BaseUri, ManagementEndpoint.AlivePath, ManagementEndpoint.ReadyPath,
                    settings.Management.Bootstraps ? $"; Cluster Bootstrap by {settings.Management.Method} discovery" : "");
            }
            catch (SettingsException)
            {
                system.Terminate().Wait(TimeSpan.FromSeconds(10));
                throw;
            }
        }
        if (!settings.ClusterSecret.Enabled)
            system.Log.Warning("{0} is not set: this node accepts control messages (registration included) from any peer that reaches its port {1}; " +
                "set it (or {2}) on every node, or use TLS (README, \"Security\")",
                ClusterSecretSettings.Key, Akka.Cluster.Cluster.Get(system).SelfAddress.Port, ClusterSecretSettings.EnvironmentVariable);
        return (system, proxy);
    }

    /// <summary>An ActorSystem with the cluster tools' defaults and, where <paramref name="tls"/> is on, TLS for remoting.</summary>
    public static ActorSystem CreateSystem(string name, Config config, TlsSettings tls, Logging.INodeLineSink? output = null)
    {
        ActorSystemSetup WithOutput(ActorSystemSetup setup) => output is null ? setup : setup.And(new Logging.NodeOutputSetup(output));
        if (!tls.Enabled) return ActorSystem.Create(name, WithOutput(ActorSystemSetup.Create(BootstrapSetup.Create().WithConfig(WithClusterToolsDefaults(config)))));
        var material = NodeTls.Load(tls);
        var setup = BootstrapSetup.Create()
            .WithConfig(WithClusterToolsDefaults(NodeTls.RemotingConfig(config)))
            .And(material.RemotingSetup());
        var system = ActorSystem.Create(name, WithOutput(setup));
        material.Attach(system);
        return system;
    }
}
