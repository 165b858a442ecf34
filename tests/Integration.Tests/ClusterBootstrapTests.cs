using System.Text.Json;
using ActorTrain.Integration.Tests.TestBed;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// Nodes started without any seed-node list find each other by config discovery (Akka.Management's
/// Cluster Bootstrap) on loopback, form one cluster and train together.
/// </summary>
[Collection(ProcessCollection.Name)]
public class ClusterBootstrapTests
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(6);

    [LoopbackUnlessTestBedFact(nameof(TestBedTests.TestBed_three_hosts_without_seed_nodes_bootstrap_by_config_discovery_and_train_to_equal_replicas))]
    public async Task Three_nodes_without_seed_nodes_bootstrap_by_config_discovery_and_train_to_equal_replicas()
    {
        var outDir = Repo.TempDir();
        var management = Enumerable.Range(0, 3).Select(_ => NodeProcess.FreePort()).ToArray();
        var endpoints = "[" + string.Join(",", management.Select(p => $"\"127.0.0.1:{p}\"")) + "]";
        string[] Node(string role, string name, int i) =>
        [
            role, "--hostname", "127.0.0.1", "--port", "0", "--node-name", name, "--min-nodes", "3", "--epochs", "1", "--out", outDir,
            "--intra-op-threads", "1", "--no-progress",
            "--set", "actortrain.discovery.method=config",
            "--set", $"actortrain.discovery.config.endpoints={endpoints}",
            "--set", $"akka.management.http.port={management[i]}",
        ];
        // The workers start first: whoever forms the cluster, the coordinator lands on the node started with `seed`.
        using var worker1 = NodeProcess.Start("worker1", Node("worker", "worker1", 1));
        using var worker2 = NodeProcess.Start("worker2", Node("worker", "worker2", 2));
        using var seed = NodeProcess.Start("seed", Node("seed", "seed", 0));

        var codes = await Task.WhenAll(seed.WaitForExitAsync(RunTimeout), worker1.WaitForExitAsync(RunTimeout), worker2.WaitForExitAsync(RunTimeout));
        Assert.True(codes.All(c => c == 0), $"exit codes {string.Join(",", codes)}\nseed:\n{seed.Tail()}\nworker1:\n{worker1.Tail()}\nworker2:\n{worker2.Tail()}");
        foreach (var node in new[] { seed, worker1, worker2 })
            Assert.Contains("Cluster Bootstrap by Config discovery", node.Output);

        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run-report.json")));
        var r = report.RootElement;
        Assert.Equal(3, r.GetProperty("world_size").GetInt32());
        Assert.Equal(9000 / 3 / 64, r.GetProperty("steps").GetInt64());
        var checksums = r.GetProperty("replica_checksums").EnumerateObject().Select(p => p.Value.GetString()).ToList();
        Assert.Equal(3, checksums.Count);
        Assert.Single(checksums.Distinct());
        Assert.True(r.GetProperty("replicas_equal").GetBoolean());
        Assert.Contains("Node worker1 registered", seed.Output);
    }

    [Fact]
    public async Task Config_discovery_without_endpoints_is_a_usage_error_naming_the_key()
    {
        using var worker = NodeProcess.Start("worker", "worker", "--no-progress", "--set", "actortrain.discovery.method=config");
        Assert.Equal(2, await worker.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("actortrain.discovery.config.endpoints", worker.Output);
    }
}
