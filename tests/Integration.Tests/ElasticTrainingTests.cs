using System.Text.Json;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// Elastic runs of real processes: a worker killed with SIGKILL mid-run, a node that joins
/// later, a run resumed from its checkpoints, a coordinator that moves to another seed node.
/// </summary>
[Collection(ProcessCollection.Name)]
public class ElasticTrainingTests
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(6);
    private const int Epochs = 10;

    /// <summary>A seed and two workers (one trainer each, one intra-op thread: three processes share 2 cores).</summary>
    private sealed class ThreeNodes : IDisposable
    {
        public readonly string OutDir = Repo.TempDir();
        public readonly string SeedAddress;
        public readonly NodeProcess Seed;
        public readonly List<NodeProcess> Workers = [];

        public ThreeNodes(int epochs)
        {
            var port = NodeProcess.FreePort();
            SeedAddress = $"127.0.0.1:{port}";
            Seed = NodeProcess.Start("seed", "seed", "--port", port.ToString(), "--min-nodes", "3", "--epochs", epochs.ToString(),
                "--out", OutDir, "--intra-op-threads", "1", "--node-name", "n0", "--no-progress");
            foreach (var name in new[] { "n1", "n2" }) Workers.Add(Worker(name));
        }

        public NodeProcess Worker(string name) =>
            NodeProcess.Start(name, "worker", "--seed-node", SeedAddress, "--intra-op-threads", "1", "--node-name", name, "--no-progress");

        public JsonElement Report()
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(OutDir, "run-report.json")));
            return doc.RootElement.Clone();
        }

        public void Dispose()
        {
            Seed.Dispose();
            foreach (var w in Workers) w.Dispose();
        }
    }

    [Fact]
    public async Task Chaos_a_worker_killed_at_a_random_step_and_a_node_joining_later_leave_a_complete_run_with_equal_replicas()
    {
        // The undisturbed run of the same seed, for the accuracy to compare with.
        double undisturbed;
        using (var calm = new ThreeNodes(Epochs))
        {
            Assert.Equal(0, await calm.Seed.WaitForExitAsync(RunTimeout));
            undisturbed = calm.Report().GetProperty("test_accuracy").GetDouble();
        }

        using var run = new ThreeNodes(Epochs);
        // A random step: one of the loss lines of epochs 2..4 (the seed prints one every 20 steps).
        var killAt = $"[{Random.Shared.Next(2, 5)},    {20 * Random.Shared.Next(1, 3)}] loss:";
        await run.Seed.WaitForLineAsync(killAt, RunTimeout);
        var killed = DateTime.UtcNow;
        run.Workers[1].Kill(); // SIGKILL
        await run.Seed.WaitForLineAsync("Generation 2 trains from step", TimeSpan.FromSeconds(60));
        var goingOn = DateTime.UtcNow - killed;

        using var joiner = run.Worker("n3");
        run.Workers.Add(joiner);
        Assert.Equal(0, await run.Seed.WaitForExitAsync(RunTimeout));
        Assert.Equal(0, await run.Workers[0].WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Equal(0, await joiner.WaitForExitAsync(TimeSpan.FromSeconds(60)));

        var r = run.Report();
        var context = $"killed after \"{killAt}\"\n{run.Seed.Tail(40)}";
        Assert.True(r.GetProperty("replicas_equal").GetBoolean(), context);
        var checksums = r.GetProperty("replica_checksums").EnumerateObject().Select(p => p.Value.GetString()).ToList();
        Assert.Equal(3, checksums.Count);
        Assert.Single(checksums.Distinct());
        Assert.Equal(Epochs, r.GetProperty("epochs").GetInt32());

        var generations = r.GetProperty("generations").EnumerateArray().ToList();
        Assert.Equal(3, generations.Count);
        var afterLoss = generations[1];
        Assert.DoesNotContain("n2", afterLoss.GetProperty("members").EnumerateArray().Select(m => m.GetString()));
        Assert.Equal(2, afterLoss.GetProperty("world_size").GetInt32());
        Assert.InRange(afterLoss.GetProperty("steps_redone").GetInt32(), 0, 1);
        Assert.InRange(afterLoss.GetProperty("recovery_seconds").GetDouble(), 0, 15);
        Assert.True(goingOn < TimeSpan.FromSeconds(15), $"training went on {goingOn.TotalSeconds:0.0} s after the kill\n{context}");
        var afterJoin = generations[2];
        Assert.Contains("n3", afterJoin.GetProperty("members").EnumerateArray().Select(m => m.GetString()));
        Assert.Equal(0, afterJoin.GetProperty("steps_redone").GetInt32());
        Assert.True(afterJoin.GetProperty("start_step").GetInt64() > afterLoss.GetProperty("start_step").GetInt64());
        Assert.InRange(r.GetProperty("steps_redone").GetInt32(), 0, 1);

        var accuracy = r.GetProperty("test_accuracy").GetDouble();
        Assert.True(Math.Abs(accuracy - undisturbed) <= 0.01,
            $"accuracy {accuracy:F4} after a kill and a join, {undisturbed:F4} undisturbed ({context})");
    }

    [Fact]
    public async Task A_run_resumed_from_its_checkpoint_ends_bitwise_equal_to_an_uninterrupted_one_and_skips_a_corrupt_checkpoint()
    {
        var whole = Repo.TempDir();
        using (var launcher = NodeProcess.Start("local", "local", "--nodes", "2", "--epochs", "3", "--out", whole, "--no-progress"))
            Assert.Equal(0, await launcher.WaitForExitAsync(RunTimeout));

        var part = Repo.TempDir();
        using (var launcher = NodeProcess.Start("local", "local", "--nodes", "2", "--epochs", "2", "--out", part, "--no-progress"))
            Assert.Equal(0, await launcher.WaitForExitAsync(RunTimeout));
        var checkpoints = Path.Combine(part, "checkpoints");
        var newest = Directory.GetFiles(checkpoints, "ckpt-*.atc").Order().Last();
        var bytes = File.ReadAllBytes(newest);
        bytes[bytes.Length / 2] ^= 0xFF;
        File.WriteAllBytes(newest, bytes);

        using var resumed = NodeProcess.Start("local", "local", "--nodes", "2", "--epochs", "3", "--out", part, "--resume", checkpoints, "--no-progress");
        Assert.Equal(0, await resumed.WaitForExitAsync(RunTimeout));
        Assert.Contains($"skipping checkpoint {newest}", resumed.Output);
        Assert.Contains("ckpt-000000070.atc", resumed.Output); // the end of epoch 1, the one before the corrupt file

        using var a = JsonDocument.Parse(File.ReadAllText(Path.Combine(whole, "run-report.json")));
        using var b = JsonDocument.Parse(File.ReadAllText(Path.Combine(part, "run-report.json")));
        Assert.Equal(a.RootElement.GetProperty("replica_checksums").GetProperty("0").GetString(),
            b.RootElement.GetProperty("replica_checksums").GetProperty("0").GetString());
        Assert.Equal(3, b.RootElement.GetProperty("epoch_history").GetArrayLength());
        Assert.Contains("resumed from", b.RootElement.GetProperty("generations").EnumerateArray().Last().GetProperty("reason").GetString());
    }

    [Fact]
    public async Task When_the_coordinators_seed_node_is_killed_the_coordinator_moves_to_the_other_seed_and_training_goes_on()
    {
        var (a, b) = (NodeProcess.FreePort(), NodeProcess.FreePort());
        var seeds = new[] { "--seed-node", $"127.0.0.1:{a}", "--seed-node", $"127.0.0.1:{b}" };
        var outA = Repo.TempDir();
        var outB = Repo.TempDir();
        string[] Common(string name, string outDir) =>
            ["--min-nodes", "3", "--epochs", "4", "--out", outDir, "--intra-op-threads", "1", "--node-name", name, "--no-progress"];
        // The first seed forms the cluster (and so hosts the coordinator singleton); the second joins it.
        using var seedA = NodeProcess.Start("seedA", ["seed", "--port", a.ToString(), "--seed-node", $"127.0.0.1:{a}", .. Common("sa", outA)]);
        await seedA.WaitForLineAsync("Coordinator started", TimeSpan.FromSeconds(90));
        using var seedB = NodeProcess.Start("seedB", ["seed", "--port", b.ToString(), .. seeds, .. Common("sb", outB)]);
        using var worker = NodeProcess.Start("worker", ["worker", .. seeds, "--intra-op-threads", "1", "--node-name", "w1", "--no-progress"]);
        await seedA.WaitForLineAsync("[2,    20] loss:", RunTimeout);
        seedA.Kill();

        Assert.Equal(0, await seedB.WaitForExitAsync(RunTimeout));
        Assert.Equal(0, await worker.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("Coordinator taking over generation 1", seedB.Output);
        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outB, "run-report.json")));
        var r = report.RootElement;
        Assert.True(r.GetProperty("replicas_equal").GetBoolean(), seedB.Tail());
        Assert.Equal(4, r.GetProperty("epochs").GetInt32());
        var epochs = r.GetProperty("epoch_history").EnumerateArray().Select(e => e.GetProperty("epoch").GetInt32()).ToList();
        Assert.Equal([1, 2, 3, 4], epochs);
        var generations = r.GetProperty("generations").EnumerateArray().ToList();
        Assert.Equal(2, generations.Count);
        Assert.Contains("coordinator moved", generations[1].GetProperty("reason").GetString());
        Assert.Equal(["sb", "w1"], generations[1].GetProperty("members").EnumerateArray().Select(m => m.GetString()).Order());
        Assert.InRange(generations[1].GetProperty("steps_redone").GetInt32(), 0, 1);
    }

    [Fact]
    public async Task With_a_single_seed_losing_it_ends_the_run_on_every_worker_with_exit_3_naming_the_seed()
    {
        // The worker holds the lower address, so for the quorum's tie rule it is the half that may go on: it
        // loses the seed, not the quorum. (Were the seed's address the lower one, the worker could not tell a
        // dead seed from a cut link, would count itself the cut-off half and wait for the network to heal:
        // PartitionTests cover that side.)
        var (workerPort, port) = (NodeProcess.FreePort(), NodeProcess.FreePort());
        while (port == workerPort) port = NodeProcess.FreePort();
        if (workerPort > port) (workerPort, port) = (port, workerPort);
        using var seed = NodeProcess.Start("seed", "seed", "--port", port.ToString(), "--min-nodes", "2", "--epochs", "5",
            "--out", Repo.TempDir(), "--intra-op-threads", "1", "--no-progress");
        using var worker = NodeProcess.Start("worker", "worker", "--port", workerPort.ToString(), "--seed-node", $"127.0.0.1:{port}",
            "--intra-op-threads", "1", "--no-progress");
        await seed.WaitForLineAsync("[1,    20] loss:", RunTimeout);
        seed.Kill();

        Assert.Equal(3, await worker.WaitForExitAsync(TimeSpan.FromSeconds(90)));
        Assert.Contains($"the seed node akka.tcp://actortrain@127.0.0.1:{port} is", worker.Output);
        Assert.Contains("no other seed node is up", worker.Output);
    }
}
