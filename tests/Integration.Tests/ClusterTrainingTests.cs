using System.Text.Json;
using System.Text.RegularExpressions;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// Whole runs of real processes on loopback. They share 2 cores, so they run one at a time.
/// </summary>
[Collection(ProcessCollection.Name)]
public class ClusterTrainingTests
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(6);

    [Fact]
    public async Task A_seed_and_two_workers_train_together_and_end_with_equal_replicas()
    {
        var outDir = Repo.TempDir();
        var port = NodeProcess.FreePort();
        var seedAddress = $"127.0.0.1:{port}";
        using var seed = NodeProcess.Start("seed", "seed", "--config", "hocon/seed.conf", "--port", port.ToString(),
            "--seed-node", seedAddress, "--min-nodes", "3", "--epochs", "2", "--out", outDir, "--intra-op-threads", "1");
        using var worker1 = NodeProcess.Start("worker1", "worker", "--config", "hocon/worker.conf", "--seed-node", seedAddress,
            "--node-name", "worker1", "--out", outDir, "--intra-op-threads", "1");
        using var worker2 = NodeProcess.Start("worker2", "worker", "--config", "hocon/worker.conf", "--seed-node", seedAddress,
            "--node-name", "worker2", "--out", outDir, "--intra-op-threads", "1");

        var codes = await Task.WhenAll(seed.WaitForExitAsync(RunTimeout), worker1.WaitForExitAsync(RunTimeout), worker2.WaitForExitAsync(RunTimeout));
        Assert.True(codes.All(c => c == 0), $"exit codes {string.Join(",", codes)}\nseed:\n{seed.Tail()}\nworker1:\n{worker1.Tail()}");

        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run-report.json")));
        var r = report.RootElement;
        Assert.Equal(3, r.GetProperty("world_size").GetInt32());
        Assert.Equal(3, r.GetProperty("nodes").GetArrayLength());
        Assert.Equal(2, r.GetProperty("epochs").GetInt32());
        Assert.Equal(2 * (9000 / 3 / 64), r.GetProperty("steps").GetInt64());
        var checksums = r.GetProperty("replica_checksums").EnumerateObject().Select(p => p.Value.GetString()).ToList();
        Assert.Equal(3, checksums.Count);
        Assert.Single(checksums.Distinct());
        Assert.True(r.GetProperty("replicas_equal").GetBoolean());

        // Convergence: the loss falls from epoch to epoch and the model beats chance by far.
        var history = r.GetProperty("epoch_history").EnumerateArray().Select(e => e.GetProperty("mean_loss").GetDouble()).ToList();
        Assert.True(history[1] < history[0], $"mean loss went from {history[0]} to {history[1]}");
        var accuracy = r.GetProperty("test_accuracy").GetDouble();
        Assert.InRange(accuracy, 0.5, 1.0);
        foreach (var phase in new[] { "compute", "intra_node", "cross_node" })
            Assert.True(r.GetProperty("timings_ms").GetProperty(phase).GetDouble() >= 0);
        Assert.True(r.GetProperty("timings_ms").GetProperty("cross_node").GetDouble() > 0, "three nodes must sync across nodes");

        Assert.True(File.Exists(Path.Combine(outDir, "model.pth")));
        foreach (var plot in new[] { "loss.png", "test_accuracy.png" })
        {
            var bytes = File.ReadAllBytes(Path.Combine(outDir, plot));
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
            Assert.Equal(800, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
            Assert.Equal(500, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
        }
        Assert.True(r.GetProperty("loss_curve").GetArrayLength() >= 2);
        Assert.Contains("[1,    20] loss:", seed.Output);
        Assert.Contains("test accuracy", seed.Output);
        Assert.DoesNotContain("loss:", worker1.Output);
    }

    [Fact]
    public async Task Local_runs_two_trainers_per_node_hierarchically_across_processes()
    {
        var outDir = Repo.TempDir();
        using var launcher = NodeProcess.Start("local", "local", "--nodes", "2", "--trainers-per-node", "2", "--epochs", "1", "--out", outDir);
        var code = await launcher.WaitForExitAsync(RunTimeout);
        Assert.True(code == 0, $"exit code {code}\n{launcher.Tail()}");

        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run-report.json")));
        var r = report.RootElement;
        Assert.Equal(4, r.GetProperty("world_size").GetInt32());
        var checksums = r.GetProperty("replica_checksums").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        Assert.Equal(["0", "1", "2", "3"], checksums.Keys.Order());
        Assert.Single(checksums.Values.Distinct());
        Assert.Contains("[node0] [1,    20] loss:", launcher.Output);
        Assert.Contains("[node1] ", launcher.Output);
        Assert.True(r.GetProperty("timings_ms").GetProperty("intra_node").GetDouble() > 0, "two trainers per node must reduce inside the node");
    }

    [Fact]
    public async Task The_akka_and_tcp_transports_and_the_backward_overlap_train_the_same_bitwise_identical_model()
    {
        var checksums = new List<string?>();
        // Buckets of 256 KiB: the example's gradient (1.7 MB) spans three, so the overlap has buckets to start early.
        foreach (var (transport, overlap) in new[] { ("akka", "off"), ("tcp", "off"), ("tcp", "on") })
        {
            var outDir = Repo.TempDir();
            var config = Path.Combine(outDir, "transport.conf");
            File.WriteAllText(config, $"""
                actortrain.sync.transport = {transport}
                actortrain.sync.overlap-backward = {overlap}
                actortrain.sync.bucket-size = 256KiB
                """);
            using var launcher = NodeProcess.Start("local", "local", "--nodes", "2", "--epochs", "1", "--out", outDir, "--config", config);
            var code = await launcher.WaitForExitAsync(RunTimeout);
            Assert.True(code == 0, $"{transport}, overlap {overlap}: exit code {code}\n{launcher.Tail()}");
            Assert.Contains($"gradients over {transport}", launcher.Output);
            if (overlap == "on")
            {
                var early = Regex.Match(launcher.Output, @"overlap-backward: (\d+) of (\d+) bucket\(s\) can start reducing during backward");
                Assert.True(early.Success && int.Parse(early.Groups[1].Value) >= 1, $"no bucket can start during backward:\n{launcher.Tail()}");
            }
            else Assert.DoesNotContain("overlap-backward:", launcher.Output);
            if (transport == "tcp" && overlap == "off") AssertQuiet(launcher.Output);
            using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run-report.json")));
            var r = report.RootElement;
            Assert.True(r.GetProperty("replicas_equal").GetBoolean());
            checksums.Add(r.GetProperty("replica_checksums").GetProperty("0").GetString());
        }
        // Same sums in the same order: neither the transport nor the overlap may change a single bit.
        Assert.Single(checksums.Distinct());
    }

    /// <summary>
    /// The main command's output is the lines that matter: a 1-epoch run of `local --nodes 2` stays short, and no
    /// line comes back again and again (a native library's warning printed per call, as libtorch's NNPACK one was).
    /// </summary>
    private static void AssertQuiet(string output)
    {
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length <= 60, $"{lines.Length} lines for one epoch on 2 nodes:\n{string.Join('\n', lines.Take(80))}");
        var repeated = lines.GroupBy(l => l).Where(g => g.Count() > 2).Select(g => $"{g.Count()} x {g.Key}").ToList();
        Assert.True(repeated.Count == 0, $"repeated lines:\n{string.Join('\n', repeated)}");
    }

    [Fact]
    public async Task A_node_of_another_job_is_refused_with_the_reason_on_both_sides()
    {
        var port = NodeProcess.FreePort();
        var seedAddress = $"127.0.0.1:{port}";
        var otherJob = Path.Combine(Repo.TempDir(), "other.conf");
        File.WriteAllText(otherJob, "actortrain.job-id = \"someone-elses-job\"");
        using var seed = NodeProcess.Start("seed", "seed", "--port", port.ToString(), "--min-nodes", "2", "--intra-op-threads", "1");
        await seed.WaitForLineAsync("registered", TimeSpan.FromSeconds(90));
        using var stranger = NodeProcess.Start("stranger", "worker", "--config", otherJob, "--seed-node", seedAddress, "--intra-op-threads", "1");

        var code = await stranger.WaitForExitAsync(TimeSpan.FromSeconds(90));
        Assert.Equal(2, code);
        Assert.Contains("someone-elses-job", stranger.Output);
        Assert.Contains("refused", stranger.Output);
        await seed.WaitForLineAsync("Refused node", TimeSpan.FromSeconds(10));
        Assert.False(seed.HasExited, "the seed must keep waiting for a node of its own job");
    }

    [Fact]
    public async Task Status_prints_the_world_of_a_running_cluster_and_fails_clearly_without_one()
    {
        var outDir = Repo.TempDir();
        using var launcher = NodeProcess.Start("local", "local", "--nodes", "2", "--epochs", "3", "--out", outDir);
        await launcher.WaitForLineAsync("[1,    20] loss:", TimeSpan.FromSeconds(120));
        var seed = System.Text.RegularExpressions.Regex.Match(launcher.Output, @"seed at (127\.0\.0\.1:\d+)").Groups[1].Value;

        using var status = NodeProcess.Start("status", "status", "--seed-node", seed, "--timeout", "20");
        Assert.Equal(0, await status.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("job mnist: training, generation 1", status.Output);
        Assert.Contains("node0", status.Output);
        Assert.Contains("node1", status.Output);
        Assert.Contains("slowest rank", status.Output);

        // Every node serves Prometheus metrics while it trains.
        var metricsUrl = System.Text.RegularExpressions.Regex.Match(launcher.Output, @"\[node1\] metrics at (http://\S+)").Groups[1].Value;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        // The tcp transport's byte counts reach the metrics every 2 s: scrape until the first report is in.
        const string sentBytes = @"actortrain_transport_bytes_total\{transport=""(akka|tcp)"",direction=""sent"",node=""node1""\} [1-9]";
        var scraped = await http.GetStringAsync(metricsUrl);
        for (var deadline = DateTime.UtcNow.AddSeconds(15); !Regex.IsMatch(scraped, sentBytes) && DateTime.UtcNow < deadline;)
        {
            await Task.Delay(250);
            scraped = await http.GetStringAsync(metricsUrl);
        }
        Assert.Contains("actortrain_step_phase_seconds_count{phase=\"cross_node\",node=\"node1\"}", scraped);
        Assert.Contains("actortrain_generation{node=\"node1\"} 1", scraped);
        Assert.Matches(sentBytes, scraped);
        launcher.Kill();

        using var nobody = NodeProcess.Start("status", "status", "--seed-node", $"127.0.0.1:{NodeProcess.FreePort()}", "--timeout", "2");
        Assert.Equal(1, await nobody.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("no coordinator answered", nobody.Output);
    }

    [Fact]
    public async Task A_node_that_cannot_start_says_why_and_exits_2()
    {
        var config = Path.Combine(Repo.TempDir(), "nccl.conf");
        File.WriteAllText(config, "actortrain.sync.intra-node = nccl");
        using var seed = NodeProcess.Start("seed", "seed", "--config", config, "--intra-op-threads", "1");
        Assert.Equal(2, await seed.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("cannot start", seed.Output);
        Assert.Contains("NCCL", seed.Output);
    }

    [Fact]
    public async Task A_worker_whose_seed_never_answers_exits_with_an_error_naming_the_seed()
    {
        var config = Path.Combine(Repo.TempDir(), "impatient.conf");
        File.WriteAllText(config, "actortrain.startup-timeout = 3s");
        var nobody = NodeProcess.FreePort();
        using var worker = NodeProcess.Start("worker", "worker", "--config", config, "--seed-node", $"127.0.0.1:{nobody}", "--intra-op-threads", "1");
        var code = await worker.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(2, code);
        Assert.Contains("no coordinator answered", worker.Output);
        Assert.Contains($"127.0.0.1:{nobody}", worker.Output);
    }

    [Fact]
    public async Task With_elastic_training_off_losing_a_worker_ends_the_run_with_an_error_naming_it()
    {
        var outDir = Repo.TempDir();
        var port = NodeProcess.FreePort();
        var seedAddress = $"127.0.0.1:{port}";
        var config = Path.Combine(Repo.TempDir(), "rigid.conf");
        File.WriteAllText(config, "actortrain.elastic.enabled = off");
        using var seed = NodeProcess.Start("seed", "seed", "--config", config, "--port", port.ToString(), "--min-nodes", "2", "--epochs", "5",
            "--out", outDir, "--intra-op-threads", "1");
        using var worker = NodeProcess.Start("worker", "worker", "--seed-node", seedAddress, "--intra-op-threads", "1", "--node-name", "doomed-worker");
        await seed.WaitForLineAsync("[1,    20] loss:", TimeSpan.FromSeconds(120));
        worker.Kill();

        // Over the TCP data plane the broken connection is seen at once and names the neighbour;
        // otherwise the failure detector declares the node lost. Either way: exit 3, named.
        var code = await seed.WaitForExitAsync(TimeSpan.FromSeconds(90));
        Assert.Equal(3, code);
        Assert.Contains("doomed-worker", seed.Output);
        Assert.False(File.Exists(Path.Combine(outDir, "run-report.json")));
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public class ProcessCollection
{
    public const string Name = "processes";
}
