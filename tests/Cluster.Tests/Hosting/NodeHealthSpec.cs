using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Cluster;
using Akka.Configuration;

namespace ActorTrain.Cluster.Tests.Hosting;

/// <summary>The readiness verdict, and how actortrain.management / actortrain.discovery are read and mapped onto Akka's keys.</summary>
public class NodeHealthSpec
{
    private const string Self = "akka.tcp://actortrain@10.0.0.2:4053";

    private static ClusterStatus Status(int worldSize, int registered, params NodeStatus[] nodes) =>
        new("r", "job", "training", 4, 1, 2, worldSize, nodes, -1, 0, [], registered, 2, "");

    private static NodeStatus Node(string name, string address, int firstRank) => new(name, address, firstRank, 2, ["cpu"], 10, 1.5, 0.2);

    [Theory]
    [InlineData(null, "not a member of the cluster yet (looking for it)")]
    [InlineData(MemberStatus.Joining, "not a member of the cluster yet (joining)")]
    [InlineData(MemberStatus.Leaving, "leaving the cluster (leaving)")]
    [InlineData(MemberStatus.Exiting, "leaving the cluster (exiting)")]
    public void A_node_that_is_not_an_up_member_is_not_ready(MemberStatus? member, string reason)
    {
        var v = NodeHealth.Judge(member, Status(2, 2, Node("w", Self, 0)), "w", Self, trains: true);
        Assert.False(v.Healthy);
        Assert.Contains(reason, v.Reason);
    }

    [Fact]
    public void An_up_member_is_ready_only_with_a_place_in_the_current_generation()
    {
        Assert.Contains("coordinator does not answer", NodeHealth.Judge(MemberStatus.Up, null, "w", Self, true).Reason);

        var waiting = NodeHealth.Judge(MemberStatus.Up, Status(0, 1, Node("w", Self, -1)), "w", Self, true);
        Assert.False(waiting.Healthy);
        Assert.Contains("waiting for the first generation (1 of 2", waiting.Reason);

        var unregistered = NodeHealth.Judge(MemberStatus.Up, Status(0, 1, Node("other", "akka.tcp://actortrain@10.0.0.3:4053", -1)), "w", Self, true);
        Assert.Contains("not registered with the coordinator yet", unregistered.Reason);

        var joiner = NodeHealth.Judge(MemberStatus.Up, Status(2, 2, Node("other", "akka.tcp://actortrain@10.0.0.3:4053", 0)), "w", Self, true);
        Assert.False(joiner.Healthy);
        Assert.Contains("waiting to be admitted", joiner.Reason);

        // Matched by address when the name differs (the coordinator's own node before it is named).
        var ready = NodeHealth.Judge(MemberStatus.Up, Status(4, 2, Node("other", "akka.tcp://actortrain@10.0.0.3:4053", 0), Node("w-renamed", Self, 2)), "w", Self, true);
        Assert.True(ready.Healthy);
        Assert.Equal("ready: ranks 2..3 of generation 4 (training, world size 4)", ready.Reason);
    }

    [Fact]
    public void A_coordinator_only_seed_is_ready_when_its_coordinator_answers() =>
        Assert.True(NodeHealth.Judge(MemberStatus.Up, Status(2, 2), "seed", Self, trains: false).Healthy);

    [Fact]
    public void Config_discovery_maps_onto_akka_discovery_and_cluster_bootstrap()
    {
        var config = TestConfig.With("""
            actortrain.discovery.method = config
            actortrain.discovery.config.endpoints = ["10.0.0.1:8558", "10.0.0.2:8558", "10.0.0.3:8559"]
            akka.remote.dot-netty.tcp.public-hostname = "10.0.0.2"
            """);
        var m = ActorTrainSettings.Create(config).Management;
        Assert.True(m.Runs);
        Assert.True(m.Bootstraps);
        Assert.Equal(3, m.RequiredContactPoints);

        var akka = ConfigurationFactory.ParseString("akka.management.cluster.bootstrap.contact-point-discovery.stable-margin = 1s")
            .WithFallback(NodeManagement.AkkaConfig(m, config));
        Assert.Equal("config", akka.GetString("akka.discovery.method"));
        Assert.Equal(["10.0.0.1:8558", "10.0.0.2:8558", "10.0.0.3:8559"], akka.GetStringList("akka.discovery.config.services.actortrain.endpoints"));
        Assert.Equal(3, akka.GetInt("akka.management.cluster.bootstrap.contact-point-discovery.required-contact-point-nr"));
        Assert.Equal("10.0.0.2", akka.GetString("akka.management.http.hostname"));
        Assert.False(akka.GetBoolean("akka.management.cluster.bootstrap.contact-point.filter-on-fallback-port"));
    }

    [Fact]
    public void Kubernetes_discovery_maps_the_label_selector_namespace_and_port_name()
    {
        var config = TestConfig.With("""
            actortrain.discovery.method = kubernetes-api
            actortrain.discovery.kubernetes { pod-label-selector = "app=mnist", namespace = "training" }
            actortrain.min-nodes = 4
            """);
        var m = ActorTrainSettings.Create(config).Management;
        var akka = NodeManagement.AkkaConfig(m, config);
        Assert.Equal("kubernetes-api", akka.GetString("akka.discovery.method"));
        Assert.Equal("app=mnist", akka.GetString("akka.discovery.kubernetes-api.pod-label-selector"));
        Assert.Equal("training", akka.GetString("akka.discovery.kubernetes-api.pod-namespace"));
        Assert.Equal("management", akka.GetString("akka.management.cluster.bootstrap.contact-point-discovery.port-name"));
        Assert.Equal(4, akka.GetInt("akka.management.cluster.bootstrap.contact-point-discovery.required-contact-point-nr"));
        Assert.StartsWith("Akka.Discovery.KubernetesApi.KubernetesApiServiceDiscovery", akka.GetString("akka.discovery.kubernetes-api.class"));
    }

    [Fact]
    public void Management_is_off_by_default_and_discovery_settings_are_checked()
    {
        var m = ActorTrainSettings.Create(TestConfig.With("")).Management;
        Assert.False(m.Runs);
        Assert.Equal(DiscoveryMethod.SeedNodes, m.Method);

        Assert.Contains("expected one of seed-nodes | config | kubernetes-api", Assert.Throws<SettingsException>(() =>
            ActorTrainSettings.Create(TestConfig.With("actortrain.discovery.method = dns"))).Message);
        Assert.Equal(ManagementSettings.EndpointsKey, Assert.Throws<SettingsException>(() =>
            ActorTrainSettings.Create(TestConfig.With("actortrain.discovery.method = config"))).Path);
        Assert.Contains("\"10.0.0.1\"", Assert.Throws<SettingsException>(() =>
            ActorTrainSettings.Create(TestConfig.With("actortrain.discovery.config.endpoints = [\"10.0.0.1\"]"))).Message);
    }
}
