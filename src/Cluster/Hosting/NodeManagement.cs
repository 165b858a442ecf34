using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Configuration;
using Akka.Management.Dsl;

namespace ActorTrain.Cluster.Hosting;

/// <summary>
/// Management on a node: the HTTP endpoint (health checks, <see cref="ManagementEndpoint"/>)
/// and, with a discovery method other than seed-nodes, Cluster Bootstrap, which finds the other
/// nodes through Akka.Discovery and forms or joins the cluster without any seed-node list.
/// </summary>
internal static class NodeManagement
{
    /// <summary>
    /// The Akka.Management, Akka.Discovery and Cluster Bootstrap settings that <paramref name="m"/>
    /// stands for, to go below the node's own configuration <paramref name="node"/> (so that
    /// akka.management.* keys set there win). The endpoint's hostname defaults to the address the
    /// node advertises for remoting, which is how the other nodes' discovery lists it.
    /// </summary>
    public static Config AkkaConfig(ManagementSettings m, Config node)
    {
        if (!m.Runs) return ConfigurationFactory.Empty;
        var advertised = node.GetString("akka.remote.dot-netty.tcp.public-hostname", "");
        if (string.IsNullOrWhiteSpace(advertised)) advertised = node.GetString("akka.remote.dot-netty.tcp.hostname", "");
        var lines = new List<string>();
        if (!string.IsNullOrWhiteSpace(advertised) && advertised != "0.0.0.0") lines.Add($"akka.management.http.hostname = {Quote(advertised)}");
        if (!m.Bootstraps) return ConfigurationFactory.ParseString(string.Join('\n', lines));
        var method = m.Method == DiscoveryMethod.Config ? "config" : "kubernetes-api";
        var service = Quote(m.ServiceName);
        lines.AddRange(new[]
        {
            $"akka.discovery.method = {method}",
            $"akka.management.cluster.bootstrap.contact-point-discovery.service-name = {service}",
            $"akka.management.cluster.bootstrap.contact-point-discovery.discovery-method = {method}",
            $"akka.management.cluster.bootstrap.contact-point-discovery.required-contact-point-nr = {m.RequiredContactPoints}",
        });
        if (m.Method == DiscoveryMethod.Config)
        {
            lines.Add($"akka.discovery.config.services.{service}.endpoints = [{string.Join(", ", m.Endpoints.Select(Quote))}]");
            // Each endpoint names its own port; without this only those on the fallback port (akka.management.http.port) would be probed.
            lines.Add("akka.management.cluster.bootstrap.contact-point.filter-on-fallback-port = false");
            return ConfigurationFactory.ParseString(string.Join('\n', lines));
        }
        lines.Add($"akka.discovery.kubernetes-api.pod-label-selector = {Quote(m.PodLabelSelector)}");
        if (m.Namespace.Length > 0) lines.Add($"akka.discovery.kubernetes-api.pod-namespace = {Quote(m.Namespace)}");
        if (m.ManagementPortName.Length > 0) lines.Add($"akka.management.cluster.bootstrap.contact-point-discovery.port-name = {Quote(m.ManagementPortName)}");
        return ConfigurationFactory.ParseString(string.Join('\n', lines))
            .WithFallback(Akka.Discovery.KubernetesApi.KubernetesDiscovery.DefaultConfiguration());
    }

    /// <summary>
    /// Serves the management endpoint (<see cref="ManagementEndpoint"/>) and, when the cluster
    /// forms by bootstrap and no seed nodes are given (a rejoin names its peers), starts Cluster
    /// Bootstrap with this endpoint as its own contact point. A port that cannot be bound is a
    /// <see cref="SettingsException"/> naming akka.management.http.port.
    /// </summary>
    public static ManagementEndpoint Start(ActorSystem system, ManagementSettings m)
    {
        var endpoint = ManagementEndpoint.Start(system);
        if (m.Bootstraps && system.Settings.Config.GetStringList("akka.cluster.seed-nodes").Count == 0)
        {
            var bootstrap = Akka.Management.Cluster.Bootstrap.ClusterBootstrap.Get(system);
            // Tells the bootstrap where this node's contact point is (its routes are served by the endpoint above).
            bootstrap.Routes(ManagementRouteProviderSettings.Create(endpoint.BaseUri, readOnly: true));
            _ = bootstrap.Start();
        }
        return endpoint;
    }

    private static string Quote(string value) => Security.NodeTls.Quote(value);
}
