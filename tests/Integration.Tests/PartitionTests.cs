using System.Text.Json;
using Xunit.Abstractions;
using ActorTrain.Integration.Tests.TestBed;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// Faults of real networks on the namespace test bed: hosts cut off and healed, nodes killed,
/// stopped or asked to leave, and a trainer that throws. Every node is a real process started as
/// on real machines, with its own address; the assertions are on exit codes, reports and files.
/// </summary>
[Collection(ProcessCollection.Name)]
public class PartitionTests(ITestOutputHelper output)
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(6);
    private const string Port = "4053";

    /// <summary>Nodes on hosts of one bed; host 1 (the lowest address) is always the first seed.</summary>
    private sealed class Cluster : IDisposable
    {
        public readonly NetnsTestBed Bed;
        private readonly string[] _seeds;
        public readonly Dictionary<int, NodeProcess> Nodes = [];
        public readonly Dictionary<int, string> OutDirs = [];

        public Cluster(int hosts, int seeds = 1)
        {
            Bed = NetnsTestBed.Create(hosts);
            _seeds = Enumerable.Range(1, seeds).Select(h => $"{Bed.Ip(h)}:{Port}").ToArray();
        }

        public NodeProcess Start(int host, int minNodes, int epochs, IReadOnlyDictionary<string, string>? environment = null, params string[] extra)
        {
            OutDirs[host] = Repo.TempDir();
            var role = host <= _seeds.Length ? "seed" : "worker";
            var args = new List<string> { role, "--hostname", Bed.Ip(host), "--port", Port, "--node-name", $"h{host}", "--out", OutDirs[host],
                "--intra-op-threads", "1", "--no-progress", "--epochs", epochs.ToString(), "--min-nodes", minNodes.ToString() };
            foreach (var s in _seeds) args.AddRange(["--seed-node", s]);
            args.AddRange(extra);
            return Nodes[host] = Bed.Start(host, $"h{host}", environment ?? new Dictionary<string, string>(), args.ToArray());
        }

        public JsonElement Report(int host)
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(OutDirs[host], "run-report.json")));
            return doc.RootElement.Clone();
        }

        public string Tails() => string.Join("\n", Nodes.Select(n => $"--- h{n.Key}:\n{n.Value.Tail(40)}"));

        public void Dispose() => Bed.Dispose();
    }

    private static void AssertCompleted(JsonElement report, int worldSize, string context)
    {
        Assert.Equal("completed", report.GetProperty("status").GetString());
        Assert.True(report.GetProperty("replicas_equal").GetBoolean(), context);
        var checksums = report.GetProperty("replica_checksums").EnumerateObject().Select(p => p.Value.GetString()).ToList();
        Assert.Equal(worldSize, checksums.Count);
        Assert.Single(checksums.Distinct());
    }

    private static List<JsonElement> Generations(JsonElement report) => report.GetProperty("generations").EnumerateArray().ToList();

    [TestBedFact]
    public async Task Partition_the_coordinators_host_cut_off_for_40s_the_majority_finishes_and_the_minority_writes_nothing()
    {
        using var c = new Cluster(3, seeds: 2);
        var s1 = c.Start(1, 3, 10);
        var s2 = c.Start(2, 3, 10);
        var w3 = c.Start(3, 3, 10);
        await s1.WaitForLineAsync("[2,    20] loss:", RunTimeout);
        c.Bed.Cut(1);
        var cut = DateTime.UtcNow;
        // The cut-off side (the coordinator and its node) loses the quorum and stops there.
        await s1.WaitForLineAsync("Quorum lost", TimeSpan.FromSeconds(40));
        await s2.WaitForLineAsync("trains from step", TimeSpan.FromSeconds(120));
        var trainingAgain = DateTime.UtcNow - cut;
        await Task.Delay(TimeSpan.FromSeconds(40) - (DateTime.UtcNow - cut) is { Ticks: > 0 } left ? left : TimeSpan.Zero);
        c.Bed.Heal(1);

        Assert.Equal(0, await s2.WaitForExitAsync(RunTimeout));
        Assert.Equal(0, await w3.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        var r = c.Report(2);
        var context = $"training again {trainingAgain.TotalSeconds:0.0}s after the cut\n{c.Tails()}";
        Assert.Equal(10, r.GetProperty("epochs").GetInt32());
        AssertCompleted(r, r.GetProperty("world_size").GetInt32(), context);
        // The minority: whether it rejoined or ended, it never wrote a model or a report of its own.
        var code = await s1.WaitForExitAsync(TimeSpan.FromSeconds(90));
        Assert.True(code is 0 or 3, $"h1 exited {code}\n{context}");
        Assert.False(File.Exists(Path.Combine(c.OutDirs[1], "run-report.json")), context);
        Assert.False(File.Exists(Path.Combine(c.OutDirs[1], "model.pth")), context);
        output.WriteLine($"coordinator's host cut off: the majority trained again {trainingAgain.TotalSeconds:0.0}s after the cut; h1 exited {code}");
    }

    [TestBedFact]
    public async Task Partition_a_workers_host_cut_off_and_healed_rejoins_and_the_run_finishes_with_it()
    {
        using var c = new Cluster(3);
        // A quicker failure detector and split-brain resolver than the defaults (what is tested is
        // the rejoin, not the timings), and enough epochs that the run still goes on when the worker is back.
        var quick = new[] { "--config", WriteConfig("""
            akka.cluster.failure-detector.acceptable-heartbeat-pause = 5s
            akka.cluster.split-brain-resolver.stable-after = 6s
            """) };
        var s1 = c.Start(1, 3, 15, null, quick);
        c.Start(2, 3, 15, null, quick);
        var w3 = c.Start(3, 3, 15, null, quick);
        await s1.WaitForLineAsync("[2,    20] loss:", RunTimeout);
        c.Bed.Cut(3);
        var cut = DateTime.UtcNow;
        await s1.WaitForLineAsync("Generation 2 trains from step", TimeSpan.FromSeconds(60));
        var trainingAgain = DateTime.UtcNow - cut;
        // The cut-off worker stops on its own side, then is removed; it comes back after the heal.
        await w3.WaitForLineAsync("lost the quorum", TimeSpan.FromSeconds(40));
        await Task.Delay(TimeSpan.FromSeconds(20) - (DateTime.UtcNow - cut) is { Ticks: > 0 } left ? left : TimeSpan.Zero);
        c.Bed.Heal(3);
        await w3.WaitForLineAsync("rejoining the cluster as a new member", TimeSpan.FromSeconds(60));

        Assert.True(await s1.WaitForExitAsync(RunTimeout) == 0, c.Tails());
        Assert.True(await w3.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, c.Tails());
        var r = c.Report(1);
        var context = $"training again {trainingAgain.TotalSeconds:0.0}s after the cut\n{c.Tails()}";
        AssertCompleted(r, 3, context);
        var last = Generations(r)[^1];
        Assert.Contains("h3", last.GetProperty("members").EnumerateArray().Select(m => m.GetString()));
        output.WriteLine($"worker's host cut off: training again {trainingAgain.TotalSeconds:0.0}s after the cut; rejoined in generation {last.GetProperty("generation")}, " +
            $"recovery {last.GetProperty("recovery_seconds")}s after its registration");
    }

    [TestBedFact]
    public async Task Partition_with_rejoin_off_a_cut_off_worker_exits_3_and_the_run_finishes()
    {
        using var c = new Cluster(3);
        var off = new[] { "--config", WriteConfig("actortrain.elastic.rejoin = off") };
        var s1 = c.Start(1, 3, 6, null, off);
        c.Start(2, 3, 6, null, off);
        var w3 = c.Start(3, 3, 6, null, off);
        await s1.WaitForLineAsync("[2,    20] loss:", RunTimeout);
        c.Bed.Cut(3);
        Assert.Equal(3, await w3.WaitForExitAsync(TimeSpan.FromSeconds(90)));
        c.Bed.Heal(3);
        Assert.Equal(0, await s1.WaitForExitAsync(RunTimeout));
        AssertCompleted(c.Report(1), 2, c.Tails());
        Assert.False(File.Exists(Path.Combine(c.OutDirs[3], "model.pth")));
    }

    [TestBedFact]
    public async Task Faults_the_coordinator_killed_during_a_regroup_and_the_run_completes()
    {
        using var c = new Cluster(4, seeds: 2);
        // Over Akka remoting no data-plane connection names a suspect, so a regroup waits for a
        // silent node up to regroup-timeout: the window in which the coordinator is killed.
        var config = new[] { "--config", WriteConfig("""
            actortrain.sync.transport = akka
            actortrain.sync.step-timeout = 3s
            actortrain.elastic.regroup-timeout = 30s
            """) };
        var nodes = Enumerable.Range(1, 4).Select(h => c.Start(h, 4, 6, null, config)).ToArray();
        await nodes[0].WaitForLineAsync("[2,    20] loss:", RunTimeout);
        // h4 stops answering (SIGSTOP): the step times out, the coordinator regroups, and waits for h4
        // while the others have stopped and reported.
        nodes[3].Signal("STOP");
        await nodes[1].WaitForLineAsync("stopped after step", TimeSpan.FromSeconds(30));
        await nodes[2].WaitForLineAsync("stopped after step", TimeSpan.FromSeconds(30));
        nodes[0].Kill(); // the coordinator, mid-regroup
        var killed = DateTime.UtcNow;
        nodes[3].Signal("CONT");

        Assert.True(await nodes[1].WaitForExitAsync(RunTimeout) == 0, c.Tails());
        foreach (var h in new[] { 2, 3 }) Assert.True(await nodes[h].WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, c.Tails());
        var r = c.Report(2);
        AssertCompleted(r, 3, c.Tails());
        Assert.Equal(6, r.GetProperty("epochs").GetInt32());
        var last = Generations(r)[^1];
        Assert.Contains("coordinator moved", last.GetProperty("reason").GetString());
        output.WriteLine($"coordinator killed during a regroup: generation {last.GetProperty("generation")} trained " +
            $"{last.GetProperty("recovery_seconds")}s after the new coordinator took over ({(DateTime.UtcNow - killed).TotalSeconds:0}s from the kill to the end of the run)");
    }

    [TestBedFact]
    public async Task Faults_two_workers_of_four_killed_at_once_the_half_with_the_lowest_address_completes()
    {
        using var c = new Cluster(4);
        var nodes = Enumerable.Range(1, 4).Select(h => c.Start(h, 4, 6)).ToArray();
        await nodes[0].WaitForLineAsync("[2,    20] loss:", RunTimeout);
        nodes[2].Kill();
        nodes[3].Kill();
        var killed = DateTime.UtcNow;
        await nodes[0].WaitForLineAsync("Generation 2 trains from step", TimeSpan.FromSeconds(60));
        var trainingAgain = DateTime.UtcNow - killed;

        Assert.Equal(0, await nodes[0].WaitForExitAsync(RunTimeout));
        Assert.Equal(0, await nodes[1].WaitForExitAsync(TimeSpan.FromSeconds(60)));
        var r = c.Report(1);
        AssertCompleted(r, 2, c.Tails());
        output.WriteLine($"two of four killed: training again {trainingAgain.TotalSeconds:0.0}s after the kill");
    }

    [TestBedFact]
    public async Task Faults_sigterm_on_a_worker_leaves_at_a_step_boundary_with_no_step_redone()
    {
        using var c = new Cluster(3);
        var s1 = c.Start(1, 3, 5);
        c.Start(2, 3, 5);
        var w3 = c.Start(3, 3, 5);
        await s1.WaitForLineAsync("[2,    20] loss:", RunTimeout);
        w3.Signal("TERM");
        var term = DateTime.UtcNow;
        Assert.Equal(143, await w3.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        await s1.WaitForLineAsync("Generation 2 trains from step", TimeSpan.FromSeconds(60));
        var trainingAgain = DateTime.UtcNow - term;

        Assert.Equal(0, await s1.WaitForExitAsync(RunTimeout));
        var r = c.Report(1);
        AssertCompleted(r, 2, c.Tails());
        var second = Generations(r)[1];
        Assert.True(second.GetProperty("steps_redone").GetInt32() == 0, c.Tails());
        Assert.Equal(0, r.GetProperty("steps_redone").GetInt32());
        Assert.Contains("leave", second.GetProperty("reason").GetString());
        output.WriteLine($"SIGTERM: training again {trainingAgain.TotalSeconds:0.0}s after the signal, 0 steps redone");
    }

    [TestBedFact]
    public async Task Faults_a_trainer_that_throws_loses_its_node_and_the_others_go_on()
    {
        using var c = new Cluster(3);
        var s1 = c.Start(1, 3, 5);
        c.Start(2, 3, 5);
        var w3 = c.Start(3, 3, 5, new Dictionary<string, string> { ["ACTORTRAIN_FAULT_THROW_AT_STEP"] = "60" });
        Assert.Equal(1, await w3.WaitForExitAsync(RunTimeout));
        var failed = DateTime.UtcNow;
        await s1.WaitForLineAsync("Generation 2 trains from step", TimeSpan.FromSeconds(60));
        var trainingAgain = DateTime.UtcNow - failed;

        Assert.Equal(0, await s1.WaitForExitAsync(RunTimeout));
        var r = c.Report(1);
        AssertCompleted(r, 2, c.Tails());
        var second = Generations(r)[1];
        Assert.Contains("fault injected", second.GetProperty("reason").GetString());
        output.WriteLine($"a trainer threw: training again {second.GetProperty("recovery_seconds")}s after the failure reached the coordinator " +
            $"({second.GetProperty("steps_redone")} step(s) redone; the failed node exited {trainingAgain.TotalSeconds:0.0}s before the line was seen)");
    }

    [TestBedFact]
    public async Task Faults_a_slow_node_is_named_the_straggler_in_status_and_in_the_metrics()
    {
        using var c = new Cluster(3);
        var s1 = c.Start(1, 3, 10);
        c.Start(2, 3, 10);
        var w3 = c.Start(3, 3, 10);
        await s1.WaitForLineAsync("[1,    20] loss:", RunTimeout);
        // h3's host gets a fifth of a core (a real CPU quota, as on an overloaded or throttled machine).
        using var slow = CpuQuota.Create(w3.Pid, percent: 20);
        await s1.WaitForLineAsync("Straggler: rank", TimeSpan.FromSeconds(60));

        var status = c.Bed.Start(1, "status", "status", "--seed-node", $"{c.Bed.Ip(1)}:{Port}", "--hostname", c.Bed.Ip(1), "--timeout", "20");
        Assert.True(await status.WaitForExitAsync(TimeSpan.FromSeconds(60)) == 0, status.Tail());
        Assert.Matches(@"straggler: rank \d+ on node h3 ", status.Output);

        // The gauge holds the ratio while h3 is the straggler and 0 once it is not. The coordinator judges each
        // node's latest progress report, and a node on a fifth of a core reports late and unevenly, so it may be
        // cleared for a moment ("No straggler any more") and named again: read the metrics until they name it.
        var url = System.Text.RegularExpressions.Regex.Match(s1.Output, @"metrics at (http://\S+)").Groups[1].Value;
        string? line = null, metrics = "";
        for (var deadline = DateTime.UtcNow.AddSeconds(30); DateTime.UtcNow < deadline; await Task.Delay(500))
        {
            int code;
            (code, metrics) = c.Bed.Exec(1, "bash", "-c", $"exec 3<>/dev/tcp/127.0.0.1/{new Uri(url).Port}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3");
            Assert.Equal(0, code);
            line = metrics.Split('\n').FirstOrDefault(l => l.StartsWith("actortrain_straggler{", StringComparison.Ordinal) && l.Contains("straggler_node=\"h3\""));
            if (line is not null && double.Parse(line.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture) >= 1.5) break;
        }
        Assert.True(line is not null, metrics);
        Assert.True(double.Parse(line.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture) >= 1.5,
            $"{line}\n(straggler lines of the seed: {string.Join(" | ", s1.Output.Split('\n').Where(l => l.Contains("traggler")))})");
    }

    /// <summary>A CPU quota on a process (a cgroup of its own), removed on Dispose; cgroup v2 or v1's cpu controller.</summary>
    private sealed class CpuQuota : IDisposable
    {
        private readonly string _dir;
        private readonly string _parentProcs;
        private readonly int _pid;

        private CpuQuota(string dir, string parentProcs, int pid) => (_dir, _parentProcs, _pid) = (dir, parentProcs, pid);

        public static CpuQuota Create(int pid, int percent)
        {
            var name = $"actortrain-test-{Guid.NewGuid():N}"[..28];
            if (File.Exists("/sys/fs/cgroup/cgroup.controllers"))
            {
                var dir = Path.Combine("/sys/fs/cgroup", name);
                Directory.CreateDirectory(dir);
                File.WriteAllText(Path.Combine(dir, "cpu.max"), $"{percent * 1000} 100000");
                File.WriteAllText(Path.Combine(dir, "cgroup.procs"), pid.ToString());
                return new CpuQuota(dir, "/sys/fs/cgroup/cgroup.procs", pid);
            }
            var v1 = Path.Combine("/sys/fs/cgroup/cpu", name);
            Directory.CreateDirectory(v1);
            File.WriteAllText(Path.Combine(v1, "cpu.cfs_period_us"), "100000");
            File.WriteAllText(Path.Combine(v1, "cpu.cfs_quota_us"), (percent * 1000).ToString());
            File.WriteAllText(Path.Combine(v1, "cgroup.procs"), pid.ToString());
            return new CpuQuota(v1, "/sys/fs/cgroup/cpu/cgroup.procs", pid);
        }

        public void Dispose()
        {
            try { File.WriteAllText(_parentProcs, _pid.ToString()); }
            catch (IOException) { } // the process has exited
            try { Directory.Delete(_dir); }
            catch (IOException) { Thread.Sleep(500); Directory.Delete(_dir); }
        }
    }

    private static string WriteConfig(string hocon)
    {
        var path = Path.Combine(Repo.TempDir(), "test.conf");
        File.WriteAllText(path, hocon);
        return path;
    }
}
