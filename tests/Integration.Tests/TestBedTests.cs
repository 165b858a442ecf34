using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using ActorTrain.Integration.Tests.TestBed;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// Real processes on hosts of a <see cref="NetnsTestBed"/>: each node has its own network stack
/// and address and talks to the others over a bridge, as on separate machines. Skipped where
/// the bed cannot be made (not root, no <c>ip netns</c>).
/// </summary>
[Collection(ProcessCollection.Name)]
public class TestBedTests
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(6);

    [TestBedFact]
    public async Task TestBed_a_seed_and_two_workers_on_three_hosts_train_together_and_end_with_equal_replicas()
    {
        using var bed = NetnsTestBed.Create(3);
        const string port = "4053";
        var seedAddress = $"{bed.Ip(1)}:{port}";
        var outDir = Repo.TempDir();
        // As on real machines (README, "Running on real machines"), one intra-op thread each: the hosts share the cores.
        var seed = bed.Start(1, "seed", "seed", "--config", "hocon/seed.conf", "--hostname", bed.Ip(1), "--port", port,
            "--seed-node", seedAddress, "--min-nodes", "3", "--epochs", "2", "--out", outDir, "--intra-op-threads", "1", "--no-progress");
        var workers = new[] { 2, 3 }.Select(h => bed.Start(h, $"worker{h}", "worker", "--config", "hocon/worker.conf",
            "--hostname", bed.Ip(h), "--port", port, "--seed-node", seedAddress, "--node-name", $"worker{h}",
            "--out", Repo.TempDir(), "--intra-op-threads", "1", "--no-progress")).ToArray();

        await AssertAllSucceedWithEqualReplicas(seed, workers, outDir);
        // The nodes joined over the bed's addresses, not loopback.
        Assert.Contains(bed.Ip(2), seed.Output + workers[0].Output);
    }

    [TestBedFact]
    public async Task TestBed_three_hosts_without_seed_nodes_bootstrap_by_config_discovery_and_train_to_equal_replicas()
    {
        using var bed = NetnsTestBed.Create(3);
        const string port = "4053", management = "8558";
        var outDir = Repo.TempDir();
        // No --seed-node anywhere: every host lists the others' management endpoints, as a config-discovery deployment would.
        var endpoints = "[" + string.Join(",", Enumerable.Range(1, 3).Select(h => $"\"{bed.Ip(h)}:{management}\"")) + "]";
        NodeProcess Node(int host, string role, string name, string output) => bed.Start(host, name, role, "--hostname", bed.Ip(host), "--port", port,
            "--node-name", name, "--min-nodes", "3", "--epochs", "1", "--out", output, "--intra-op-threads", "1", "--no-progress",
            "--set", "actortrain.discovery.method=config",
            "--set", $"actortrain.discovery.config.endpoints={endpoints}",
            "--set", $"akka.management.http.hostname={bed.Ip(host)}",
            "--set", $"akka.management.http.port={management}");
        // The workers start first: whichever host forms the cluster, the coordinator lands on the seed role.
        var workers = new[] { 2, 3 }.Select(h => Node(h, "worker", $"worker{h}", Repo.TempDir())).ToArray();
        var seed = Node(1, "seed", "seed", outDir);

        await AssertAllSucceedWithEqualReplicas(seed, workers, outDir);
    }

    [TestBedFact]
    public async Task TestBed_a_cut_host_is_unreachable_until_healed_a_shaped_link_has_tbf_and_dispose_leaves_nothing()
    {
        string prefix;
        using (var bed = NetnsTestBed.Create(2))
        {
            prefix = bed.Prefix;
            // A listener in host 2, on its own address.
            using var listener = bed.SocketIn(2);
            listener.Bind(new IPEndPoint(IPAddress.Parse(bed.Ip(2)), 0));
            listener.Listen();
            var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
            var timeout = TimeSpan.FromSeconds(3);

            Assert.True(await bed.CanConnectAsync(1, bed.Ip(2), port, timeout), "host 1 must reach host 2");
            bed.Cut(2);
            Assert.False(await bed.CanConnectAsync(1, bed.Ip(2), port, timeout), "host 2 is cut: host 1 must not reach it");
            bed.Heal(2);
            Assert.True(await Eventually(() => bed.CanConnectAsync(1, bed.Ip(2), port, timeout), TimeSpan.FromSeconds(10)),
                "host 2 is healed: host 1 must reach it again");

            // The hosts have no route beyond the bed.
            var (_, routes) = bed.Exec(1, "ip", "-4", "route", "show");
            Assert.DoesNotContain("default", routes);

            bed.Shape(2, "100mbit");
            var (_, rootSide) = NetnsTestBed.Command("tc", ["qdisc", "show", "dev", bed.RootLink(2)]);
            var (_, hostSide) = bed.Exec(2, "tc", "qdisc", "show", "dev", "eth0");
            Assert.Contains("tbf", rootSide);
            Assert.Contains("rate 100Mbit", rootSide);
            Assert.Contains("rate 100Mbit", hostSide);
            bed.Unshape(2);
            Assert.DoesNotContain("tbf", NetnsTestBed.Command("tc", ["qdisc", "show", "dev", bed.RootLink(2)]).Output);
            bed.Shape(1, "1gbit"); // left for Dispose to remove
        }

        var namespaces = NetnsTestBed.Command("ip", ["netns", "list"]).Output;
        var links = NetnsTestBed.Command("ip", ["-o", "link", "show"]).Output;
        Assert.DoesNotContain(prefix, namespaces);
        Assert.DoesNotContain(prefix, links);
        Assert.False(Directory.Exists($"/run/actortrain-testbed/{prefix}"));
    }

    /// <summary>Every node exits 0 and the seed's report has three equal replicas.</summary>
    private static async Task AssertAllSucceedWithEqualReplicas(NodeProcess seed, NodeProcess[] workers, string outDir)
    {
        var codes = await Task.WhenAll(new[] { seed }.Concat(workers).Select(n => n.WaitForExitAsync(RunTimeout)));
        Assert.True(codes.All(c => c == 0),
            $"exit codes {string.Join(",", codes)}\nseed:\n{seed.Tail()}\nworker2:\n{workers[0].Tail()}\nworker3:\n{workers[1].Tail()}");

        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run-report.json")));
        var r = report.RootElement;
        Assert.Equal(3, r.GetProperty("world_size").GetInt32());
        var checksums = r.GetProperty("replica_checksums").EnumerateObject().Select(p => p.Value.GetString()).ToList();
        Assert.Equal(3, checksums.Count);
        Assert.Single(checksums.Distinct());
        Assert.True(r.GetProperty("replicas_equal").GetBoolean());
    }

    private static async Task<bool> Eventually(Func<Task<bool>> check, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            if (await check()) return true;
            if (DateTime.UtcNow > deadline) return false;
            await Task.Delay(250);
        }
    }
}
