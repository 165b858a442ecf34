using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Hosting;
using Akka.Configuration;
using YamlDotNet.RepresentationModel;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// deploy/kubernetes, checked without a cluster (none is reachable here): the manifests parse,
/// and their ports, labels, selectors, probes, RBAC, grace period and volumes agree with each
/// other, with the HOCON they mount (loaded as a node loads it) and with the image
/// (deploy/docker/Dockerfile). The overlays patch what they mean to patch.
/// </summary>
public sealed class KubernetesManifestTests
{
    // Names that come from the Cluster Bootstrap and health work (Akka.Management), not yet in this
    // repository's settings: checked against these constants until reference.conf carries them.
    private const string AlivePath = "/health/alive";
    private const string ReadyPath = "/health/ready";
    private const int DefaultManagementPort = 8558;
    private const string DiscoveryMethodKey = "actortrain.discovery.method";
    private const string PodLabelSelectorKey = "actortrain.discovery.kubernetes.pod-label-selector";

    /// <summary>The container's name in both StatefulSets; patches merge into it by this name.</summary>
    private const string ContainerName = "node";

    private static string Dir(string overlay) => Path.Combine(Repo.Root, "deploy", "kubernetes", overlay);

    [Fact]
    public void The_base_lists_every_manifest_and_holds_each_kind_the_deployment_needs()
    {
        var kustomization = LoadOne(Path.Combine(Dir("base"), "kustomization.yaml"));
        var listed = Items(kustomization, "resources").Select(Scalar).ToList();
        var files = Directory.GetFiles(Dir("base"), "*.yaml").Select(Path.GetFileName).Where(f => f != "kustomization.yaml");
        Assert.Equal(files.Order(), listed.Order());

        var m = Base.Load();
        Assert.Equal(
            ["ConfigMap", "Namespace", "PodDisruptionBudget", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount", "StatefulSet", "StatefulSet"],
            m.All.Select(o => Str(o, "kind")).Order());
        Assert.Equal(Str(m.One("Namespace"), "metadata", "name"), Str(kustomization, "namespace"));
        Assert.Equal(["seed", "worker"], m.StatefulSets.Select(s => Str(s, "metadata", "labels", "app.kubernetes.io/component")).Order());
    }

    [Fact]
    public void The_mounted_HOCON_loads_as_a_node_config_and_fixes_every_port_the_pods_open()
    {
        var m = Base.Load();
        // reference.conf leaves the remoting and data-plane ports at 0 (any free port): a pod must fix them.
        var defaults = ActorTrainSettings.DefaultConfig();
        Assert.Equal(0, defaults.GetInt("akka.remote.dot-netty.tcp.port"));
        Assert.Equal(0, ActorTrainSettings.Create(defaults).Sync.TcpPort);

        var ports = m.Ports;
        Assert.NotEqual(0, ports["remoting"]);
        Assert.NotEqual(0, ports["data-plane"]);
        Assert.NotEqual(0, ports["metrics"]);
        Assert.Equal(DefaultManagementPort, ports["management"]);
        Assert.Equal(4, ports.Values.Distinct().Count());
        // Metrics and management must answer on the pod's address, not its loopback.
        Assert.Equal("0.0.0.0", m.Settings.Metrics.Hostname);
        Assert.Equal("0.0.0.0", m.Config.GetString("akka.management.http.bind-hostname"));
        Assert.Equal("kubernetes-api", m.Config.GetString(DiscoveryMethodKey));

        foreach (var set in m.StatefulSets)
        {
            var container = m.Container(set);
            var declared = Items(container, "ports").ToDictionary(p => Str(p, "name"), p => Int(p, "containerPort"));
            Assert.Equal(ports.OrderBy(p => p.Key), declared.OrderBy(p => p.Key));
        }
        var service = m.One("Service");
        foreach (var port in Items(service, "spec", "ports"))
        {
            var name = Str(port, "name");
            Assert.Equal(ports[name], Int(port, "port"));
            Assert.Equal(name, Str(port, "targetPort"));
        }
        Assert.Equal(ports.Keys.Order(), Items(service, "spec", "ports").Select(p => Str(p, "name")).Order());

        // The image opens the same ports (EXPOSE) and runs as the user the pods run as.
        var dockerfile = File.ReadAllLines(Path.Combine(Repo.Root, "deploy", "docker", "Dockerfile"));
        var expose = dockerfile.Single(l => l.StartsWith("EXPOSE ", StringComparison.Ordinal)).Split(' ').Skip(1).Select(int.Parse);
        Assert.Equal(ports.Values.Order(), expose.Order());
        var user = dockerfile.Single(l => l.StartsWith("USER ", StringComparison.Ordinal))[5..].Split(':');
        foreach (var set in m.StatefulSets)
        {
            Assert.Equal(user[0], Str(set, "spec", "template", "spec", "securityContext", "runAsUser"));
            Assert.Equal(user[1], Str(set, "spec", "template", "spec", "securityContext", "fsGroup"));
        }
    }

    [Fact]
    public void Labels_selectors_the_service_the_discovery_selector_and_the_budgets_agree()
    {
        var m = Base.Load();
        var service = m.One("Service");
        Assert.Equal("None", Str(service, "spec", "clusterIP"));
        // The nodes reach each other while they bootstrap, before any of them is ready.
        Assert.Equal("true", Str(service, "spec", "publishNotReadyAddresses"));
        var selector = ParseSelector(m.Config.GetString(PodLabelSelectorKey));
        var serviceSelector = Labels(At(service, "spec", "selector"));

        foreach (var set in m.StatefulSets)
        {
            var name = Str(set, "metadata", "name");
            var podLabels = Labels(At(set, "spec", "template", "metadata", "labels"));
            Assert.True(IsSubset(Labels(At(set, "spec", "selector", "matchLabels")), podLabels), $"{name}: its selector does not match its pods");
            Assert.True(IsSubset(selector, podLabels), $"{name}: the discovery selector {m.Config.GetString(PodLabelSelectorKey)} misses its pods");
            Assert.True(IsSubset(serviceSelector, podLabels), $"{name}: the Service does not select its pods");
            Assert.Equal(Str(service, "metadata", "name"), Str(set, "spec", "serviceName"));

            // Exactly one budget covers each role.
            var budgets = m.Of("PodDisruptionBudget").Where(b => IsSubset(Labels(At(b, "spec", "selector", "matchLabels")), podLabels)).ToList();
            Assert.True(budgets.Count == 1, $"{name}: {budgets.Count} PodDisruptionBudgets select its pods");
        }
        // The discovery selector finds nothing but ActorTrain's nodes: every pod it selects is one of the two roles.
        Assert.Equal(["seed", "worker"], m.StatefulSets.Select(s => Str(s, "spec", "template", "metadata", "labels", "app.kubernetes.io/component")).Order());
        // Workers leave one at a time; the seed (the coordinator) is never evicted voluntarily.
        var budget = m.Of("PodDisruptionBudget").ToDictionary(b => Str(b, "spec", "selector", "matchLabels", "app.kubernetes.io/component"));
        Assert.Equal("1", Str(budget["worker"], "spec", "maxUnavailable"));
        Assert.Equal("0", Str(budget["seed"], "spec", "maxUnavailable"));
    }

    [Fact]
    public void The_pods_may_list_pods_through_their_service_account()
    {
        var m = Base.Load();
        var account = Str(m.One("ServiceAccount"), "metadata", "name");
        var binding = m.One("RoleBinding");
        Assert.Contains(Items(binding, "subjects"), s => Str(s, "kind") == "ServiceAccount" && Str(s, "name") == account);
        Assert.Equal("Role", Str(binding, "roleRef", "kind"));
        var role = m.Of("Role").Single(r => Str(r, "metadata", "name") == Str(binding, "roleRef", "name"));
        var podRule = Items(role, "rules").Single(r => Items(r, "resources").Select(Scalar).Contains("pods"));
        Assert.Equal([""], Items(podRule, "apiGroups").Select(Scalar));
        Assert.Superset(new HashSet<string> { "get", "list", "watch" }, Items(podRule, "verbs").Select(Scalar).ToHashSet());
        foreach (var set in m.StatefulSets) Assert.Equal(account, Str(set, "spec", "template", "spec", "serviceAccountName"));
    }

    [Fact]
    public void Each_pod_runs_its_role_with_the_config_its_address_and_probes_on_the_management_port()
    {
        var m = Base.Load();
        var configMap = m.One("ConfigMap");
        foreach (var set in m.StatefulSets)
        {
            var role = Str(set, "metadata", "labels", "app.kubernetes.io/component");
            var spec = At(set, "spec", "template", "spec");
            var container = m.Container(set);
            var args = Items(container, "args").Select(Scalar).ToList();
            Assert.Equal(role, args[0]);
            Assert.Contains("--hostname=$(POD_IP)", args);
            Assert.Contains("--node-name=$(POD_NAME)", args);
            Assert.DoesNotContain(args, a => a.StartsWith("--seed-node", StringComparison.Ordinal)); // bootstrap by discovery
            var env = Items(container, "env").ToDictionary(e => Str(e, "name"));
            Assert.Equal("status.podIP", Str(env["POD_IP"], "valueFrom", "fieldRef", "fieldPath"));
            Assert.Equal("metadata.name", Str(env["POD_NAME"], "valueFrom", "fieldRef", "fieldPath"));

            // --config names a key of the ConfigMap, mounted read-only where the argument says.
            var config = args.Single(a => a.StartsWith("--config=", StringComparison.Ordinal))["--config=".Length..];
            var configVolume = Items(spec, "volumes").Single(v => TryAt(v, "configMap") is not null);
            Assert.Equal(Str(configMap, "metadata", "name"), Str(configVolume, "configMap", "name"));
            var mount = Items(container, "volumeMounts").Single(v => Str(v, "name") == Str(configVolume, "name"));
            Assert.Equal(Str(mount, "mountPath"), Path.GetDirectoryName(config));
            Assert.Equal("true", Str(mount, "readOnly"));
            Assert.NotNull(TryAt(configMap, "data", Path.GetFileName(config)));

            // The out-dir of the HOCON is a volume (the root file system is read-only), and so is /tmp.
            Assert.Equal("true", Str(container, "securityContext", "readOnlyRootFilesystem"));
            var mounts = Items(container, "volumeMounts").Select(v => Str(v, "mountPath")).ToList();
            Assert.Contains(m.Settings.Training.OutDir, mounts);
            Assert.Contains("/tmp", mounts);

            foreach (var (probe, path) in new[] { ("startupProbe", AlivePath), ("livenessProbe", AlivePath), ("readinessProbe", ReadyPath) })
            {
                Assert.Equal(path, Str(container, probe, "httpGet", "path"));
                Assert.Equal("management", Str(container, probe, "httpGet", "port"));
            }

            // SIGTERM: the node leaves at a step boundary within its drain deadline, then shuts down
            // within its shutdown deadline; the kubelet's SIGKILL must not come before both.
            var grace = TimeSpan.FromSeconds(Int(spec, "terminationGracePeriodSeconds"));
            Assert.True(grace > NodeRunnerDeadline("DrainDeadline") + NodeRunnerDeadline("ShutdownDeadline"),
                $"{role}: terminationGracePeriodSeconds {grace.TotalSeconds} is not longer than the node's SIGTERM drain and shutdown");
        }
    }

    [Fact]
    public void The_seed_waits_for_every_replica_and_keeps_its_outputs_on_a_volume_claim()
    {
        var m = Base.Load();
        var replicas = m.StatefulSets.ToDictionary(s => Str(s, "metadata", "labels", "app.kubernetes.io/component"), s => Int(s, "spec", "replicas"));
        Assert.Equal(1, replicas["seed"]);
        Assert.True(m.Settings.Node.Train, "the seed trains, so it counts towards min-nodes");
        Assert.Equal(replicas.Values.Sum(), m.Settings.MinNodes);

        var seed = m.StatefulSets.Single(s => Str(s, "metadata", "labels", "app.kubernetes.io/component") == "seed");
        var claim = Str(Items(seed, "spec", "volumeClaimTemplates").Single(), "metadata", "name");
        var mount = Items(m.Container(seed), "volumeMounts").Single(v => Str(v, "name") == claim);
        Assert.Equal(m.Settings.Training.OutDir, Str(mount, "mountPath"));
        // A restarted seed goes on from its checkpoints on that claim: they are written there, and read back from there.
        var checkpoints = m.Settings.Checkpoint.ResolveDir(m.Settings.Training.OutDir);
        Assert.StartsWith(Str(mount, "mountPath") + "/", checkpoints);
        Assert.True(m.Settings.Checkpoint.AtEpochEnd || m.Settings.Checkpoint.EverySteps > 0, "the seed must write checkpoints to resume from");
        Assert.Equal(checkpoints, m.Settings.Checkpoint.ResumeFrom);
        // The image is the one kustomize's images entry points elsewhere.
        var image = Str(Items(LoadOne(Path.Combine(Dir("base"), "kustomization.yaml")), "images").Single(), "name");
        foreach (var set in m.StatefulSets) Assert.StartsWith(image + ":", Str(m.Container(set), "image"));
    }

    [Fact]
    public void The_cuda_overlay_gives_each_node_one_GPU_on_the_CUDA_image()
    {
        var m = Base.Load();
        var kustomization = LoadOne(Path.Combine(Dir("cuda"), "kustomization.yaml"));
        Assert.Equal(["../base"], Items(kustomization, "resources").Select(Scalar));
        var patchEntry = Items(kustomization, "patches").Single();
        Assert.Equal("StatefulSet", Str(patchEntry, "target", "kind"));
        // The patch's target selects both roles.
        var target = ParseSelector(Str(patchEntry, "target", "labelSelector"));
        Assert.All(m.StatefulSets, s => Assert.True(IsSubset(target, Labels(At(s, "metadata", "labels"))), Str(s, "metadata", "name")));

        var patch = LoadOne(Path.Combine(Dir("cuda"), Str(patchEntry, "path")));
        var container = Items(patch, "spec", "template", "spec", "containers").Single();
        Assert.Equal(ContainerName, Str(container, "name")); // merged into the base's container, not a second one
        Assert.Equal("1", Str(container, "resources", "limits", "nvidia.com/gpu"));
        Assert.Equal("1", Str(container, "resources", "requests", "nvidia.com/gpu"));
        var device = Items(container, "env").Single(e => Str(e, "name") == "ACTORTRAIN__NODE__DEVICE");
        Assert.Equal("cuda", Str(device, "value"));
        Assert.Contains(Items(patch, "spec", "template", "spec", "tolerations"), t => Str(t, "key") == "nvidia.com/gpu");
        var image = Items(kustomization, "images").Single();
        Assert.Equal(Str(Items(LoadOne(Path.Combine(Dir("base"), "kustomization.yaml")), "images").Single(), "name"), Str(image, "name"));
        Assert.EndsWith("-cuda", Str(image, "newName"));
    }

    [Fact]
    public void The_seed_nodes_overlay_points_the_workers_at_the_seeds_stable_name_and_port()
    {
        var m = Base.Load();
        var kustomization = LoadOne(Path.Combine(Dir("seed-nodes"), "kustomization.yaml"));
        Assert.Equal(["../base"], Items(kustomization, "resources").Select(Scalar));
        var patches = Items(kustomization, "patches").Select(p => LoadOne(Path.Combine(Dir("seed-nodes"), Str(p, "path"))))
            .ToDictionary(p => Str(p, "metadata", "name"));
        Assert.Equal(m.StatefulSets.Select(s => Str(s, "metadata", "name")).Order(), patches.Keys.Order());

        var seedSet = m.StatefulSets.Single(s => Str(s, "metadata", "labels", "app.kubernetes.io/component") == "seed");
        var seedName = Str(seedSet, "metadata", "name");
        string Arg(YamlNode patch, string flag)
        {
            var container = Items(patch, "spec", "template", "spec", "containers").Single();
            Assert.Equal(ContainerName, Str(container, "name"));
            return Items(container, "args").Select(Scalar).Single(a => a.StartsWith(flag + "=", StringComparison.Ordinal))[(flag.Length + 1)..];
        }
        var seedHost = Arg(patches[seedName], "--hostname");
        Assert.Equal($"$(POD_NAME).{Str(seedSet, "spec", "serviceName")}.$(POD_NAMESPACE).svc.cluster.local", seedHost);
        var port = m.Ports["remoting"];
        Assert.Equal($"{seedHost}:{port}", Arg(patches[seedName], "--seed-node"));
        var workerName = patches.Keys.Single(k => k != seedName);
        // The seed's pod is <StatefulSet>-0: the workers name it exactly as it advertises itself.
        Assert.Equal($"{seedHost.Replace("$(POD_NAME)", seedName + "-0", StringComparison.Ordinal)}:{port}", Arg(patches[workerName], "--seed-node"));
    }

    [KubectlFact]
    public void Kustomize_renders_every_variant_with_one_container_per_pod_in_the_namespace()
    {
        foreach (var variant in new[] { "base", "cuda", "seed-nodes" })
        {
            var (code, text) = ContainerEnvironment.Run("kubectl", ["kustomize", Dir(variant)], TimeSpan.FromMinutes(1));
            Assert.True(code == 0, $"kubectl kustomize {variant}: {text}");
            var docs = Parse(text, variant);
            var sets = docs.Where(d => Str(d, "kind") == "StatefulSet").ToList();
            Assert.Equal(2, sets.Count);
            foreach (var doc in docs.Where(d => Str(d, "kind") != "Namespace"))
                Assert.Equal("actortrain", Str(doc, "metadata", "namespace"));
            foreach (var set in sets)
            {
                var container = Items(set, "spec", "template", "spec", "containers").Single();
                var gpu = TryAt(container, "resources", "limits", "nvidia.com/gpu");
                if (variant == "cuda")
                {
                    Assert.Equal("1", Scalar(gpu!));
                    Assert.StartsWith("actortrain-mnist-cuda:", Str(container, "image"));
                }
                else Assert.Null(gpu);
                var args = Items(container, "args").Select(Scalar).ToList();
                Assert.Equal(variant == "seed-nodes", args.Any(a => a.StartsWith("--seed-node=", StringComparison.Ordinal)));
                // Patches keep what they do not name: probes and ports stay.
                Assert.Equal(AlivePath, Str(container, "livenessProbe", "httpGet", "path"));
                Assert.Equal(4, Items(container, "ports").Count());
            }
        }
    }

    // ---- the base, loaded once per test ----

    private sealed record Base(IReadOnlyList<YamlMappingNode> All, Config Config, ActorTrainSettings Settings)
    {
        public static Base Load()
        {
            var all = Directory.GetFiles(Dir("base"), "*.yaml").Where(f => Path.GetFileName(f) != "kustomization.yaml")
                .SelectMany(f => Parse(File.ReadAllText(f), f)).ToList();
            var configMap = all.Single(o => Str(o, "kind") == "ConfigMap");
            var text = Str(configMap, "data", "actortrain.conf");
            var config = ConfigurationFactory.ParseString(text).WithFallback(ActorTrainSettings.DefaultConfig());
            return new Base(all, config, ActorTrainSettings.Create(config));
        }

        public IEnumerable<YamlMappingNode> Of(string kind) => All.Where(o => Str(o, "kind") == kind);
        public YamlMappingNode One(string kind) => Of(kind).Single();
        public IReadOnlyList<YamlMappingNode> StatefulSets => Of("StatefulSet").ToList();

        public YamlNode Container(YamlNode set)
        {
            var container = Items(set, "spec", "template", "spec", "containers").Single();
            Assert.Equal(ContainerName, Str(container, "name"));
            return container;
        }

        /// <summary>Each named port as the node's settings fix it.</summary>
        public IReadOnlyDictionary<string, int> Ports => new Dictionary<string, int>
        {
            ["remoting"] = Config.GetInt("akka.remote.dot-netty.tcp.port"),
            ["data-plane"] = Settings.Sync.TcpPort,
            ["management"] = Config.GetInt("akka.management.http.port", DefaultManagementPort),
            ["metrics"] = Settings.Metrics.Port,
        };
    }

    private static TimeSpan NodeRunnerDeadline(string field)
    {
        var info = typeof(NodeRunner).GetField(field, BindingFlags.NonPublic | BindingFlags.Static);
        Assert.True(info is not null, $"NodeRunner.{field} is gone: check the grace period against the node's new SIGTERM handling");
        return (TimeSpan)info.GetValue(null)!;
    }

    // ---- a small reader over YamlDotNet's representation model ----

    private static List<YamlMappingNode> Parse(string text, string source)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(text)); }
        catch (YamlDotNet.Core.YamlException e) { throw new InvalidDataException($"{source}: invalid YAML at {e.Start}: {e.Message}", e); }
        return stream.Documents.Select(d => d.RootNode as YamlMappingNode
            ?? throw new InvalidDataException($"{source}: a document is not a mapping")).ToList();
    }

    private static YamlMappingNode LoadOne(string path) => Parse(File.ReadAllText(path), path).Single();

    private static YamlNode? TryAt(YamlNode node, params string[] path)
    {
        foreach (var key in path)
        {
            if (node is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out var next)) return null;
            node = next;
        }
        return node;
    }

    private static YamlNode At(YamlNode node, params string[] path) =>
        TryAt(node, path) ?? throw new Xunit.Sdk.XunitException($"no {string.Join('.', path)} in {Describe(node)}");

    private static string Str(YamlNode node, params string[] path) => Scalar(At(node, path));

    private static int Int(YamlNode node, params string[] path) => int.Parse(Str(node, path), CultureInfo.InvariantCulture);

    private static string Scalar(YamlNode node) =>
        (node as YamlScalarNode)?.Value ?? throw new Xunit.Sdk.XunitException($"not a scalar: {node}");

    private static IEnumerable<YamlNode> Items(YamlNode node, params string[] path) =>
        At(node, path) as YamlSequenceNode ?? throw new Xunit.Sdk.XunitException($"{string.Join('.', path)} is not a list in {Describe(node)}");

    private static Dictionary<string, string> Labels(YamlNode map) =>
        ((YamlMappingNode)map).Children.ToDictionary(kv => Scalar(kv.Key), kv => Scalar(kv.Value));

    private static Dictionary<string, string> ParseSelector(string selector) =>
        selector.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => Regex.Match(s, "^([^=!]+)=([^=]*)$"))
            .Select(match => match.Success ? match : throw new Xunit.Sdk.XunitException($"label selector \"{selector}\": only key=value terms are checked here"))
            .ToDictionary(match => match.Groups[1].Value, match => match.Groups[2].Value);

    private static bool IsSubset(Dictionary<string, string> wanted, Dictionary<string, string> labels) =>
        wanted.Count > 0 && wanted.All(kv => labels.TryGetValue(kv.Key, out var v) && v == kv.Value);

    private static string Describe(YamlNode node) =>
        TryAt(node, "metadata", "name") is YamlScalarNode name ? $"{Scalar(TryAt(node, "kind") ?? new YamlScalarNode("?"))} {name.Value}" : node.Start.ToString();
}

/// <summary>A fact that renders the manifests with <c>kubectl kustomize</c>; skipped where kubectl is not installed.</summary>
public sealed class KubectlFactAttribute : FactAttribute
{
    public KubectlFactAttribute()
    {
        var onPath = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, "kubectl")));
        if (!onPath) Skip = "kubectl is not installed: the kustomize overlays are checked only as files";
    }
}
