namespace ActorTrain.Cluster.Settings;

/// <summary>How a node finds the cluster (actortrain.discovery.method).</summary>
public enum DiscoveryMethod
{
    /// <summary>Today's static list: akka.cluster.seed-nodes (--seed-node).</summary>
    SeedNodes,
    /// <summary>Cluster Bootstrap over a fixed list of management endpoints (actortrain.discovery.config.endpoints).</summary>
    Config,
    /// <summary>Cluster Bootstrap over the pods the Kubernetes API lists by label.</summary>
    KubernetesApi,
}

/// <summary>
/// Akka.Management's HTTP endpoint on this node (health checks, Cluster Bootstrap's contact
/// point) and the discovery method that forms the cluster. The endpoint runs when
/// actortrain.management.enabled is on or the method is not seed-nodes; its address is
/// Akka.Management's own akka.management.http.hostname / port.
/// </summary>
public sealed record ManagementSettings
{
    public const string EnabledKey = "actortrain.management.enabled";
    public const string MethodKey = "actortrain.discovery.method";
    public const string EndpointsKey = "actortrain.discovery.config.endpoints";
    public const string RequiredContactPointsKey = "actortrain.discovery.required-contact-points";
    public const string ServiceNameKey = "actortrain.discovery.service-name";
    public const string PodLabelSelectorKey = "actortrain.discovery.kubernetes.pod-label-selector";
    public const string NamespaceKey = "actortrain.discovery.kubernetes.namespace";
    public const string PortNameKey = "actortrain.discovery.kubernetes.management-port-name";

    public static readonly IReadOnlyDictionary<string, DiscoveryMethod> Methods = new Dictionary<string, DiscoveryMethod>
    {
        ["seed-nodes"] = DiscoveryMethod.SeedNodes,
        ["config"] = DiscoveryMethod.Config,
        ["kubernetes-api"] = DiscoveryMethod.KubernetesApi,
    };

    public static ManagementSettings Off { get; } = new() { Enabled = false, Method = DiscoveryMethod.SeedNodes };

    /// <summary>actortrain.management.enabled as set; <see cref="Runs"/> says whether the endpoint runs.</summary>
    public required bool Enabled { get; init; }
    public required DiscoveryMethod Method { get; init; }
    /// <summary>With <see cref="DiscoveryMethod.Config"/>: every node's management endpoint, host:port.</summary>
    public IReadOnlyList<string> Endpoints { get; init; } = [];
    /// <summary>Contact points that must be found before a new cluster forms; 0 means the number of endpoints (config) or actortrain.min-nodes (kubernetes-api).</summary>
    public int RequiredContactPoints { get; init; }
    /// <summary>The name Cluster Bootstrap looks up (and that fills {0} of the pod label selector).</summary>
    public string ServiceName { get; init; } = "actortrain";
    public string PodLabelSelector { get; init; } = "app=actortrain";
    /// <summary>Empty: the pod's own namespace.</summary>
    public string Namespace { get; init; } = "";
    public string ManagementPortName { get; init; } = "management";

    /// <summary>The management endpoint runs: switched on, or needed by Cluster Bootstrap.</summary>
    public bool Runs => Enabled || Bootstraps;

    /// <summary>The cluster forms by Cluster Bootstrap rather than from akka.cluster.seed-nodes.</summary>
    public bool Bootstraps => Method != DiscoveryMethod.SeedNodes;

    /// <summary>host:port with a host and a port between 1 and 65535, as config discovery takes it.</summary>
    internal static bool IsEndpoint(string value)
    {
        var colon = value.LastIndexOf(':');
        return colon > 0 && int.TryParse(value.AsSpan(colon + 1), System.Globalization.NumberStyles.None,
            System.Globalization.CultureInfo.InvariantCulture, out var port) && port is >= 1 and <= 65535;
    }
}
