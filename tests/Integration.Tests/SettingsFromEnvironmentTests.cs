namespace ActorTrain.Integration.Tests;

/// <summary>A real node process reads ACTORTRAIN__/AKKA__ variables, below its --set flags.</summary>
[Collection(ProcessCollection.Name)]
public class SettingsFromEnvironmentTests
{
    [Fact]
    public async Task A_node_takes_its_settings_from_the_environment_and_set_flags_win_over_it()
    {
        var metricsPort = NodeProcess.FreePort();
        var environmentPort = NodeProcess.FreePort();
        var flagPort = NodeProcess.FreePort();
        var environment = new Dictionary<string, string>
        {
            ["ACTORTRAIN__METRICS__PORT"] = metricsPort.ToString(),
            ["AKKA__REMOTE__DOT_NETTY__TCP__PORT"] = environmentPort.ToString(),
        };
        // min-nodes 2: the seed waits for a second node that never comes; it is killed once it has said where it listens.
        using var seed = NodeProcess.StartWithEnvironment("seed", environment, "seed", "--min-nodes", "2", "--no-progress",
            "--set", $"akka.remote.dot-netty.tcp.port={flagPort}", "--set", $"akka.cluster.seed-nodes=[\"akka.tcp://actortrain@127.0.0.1:{flagPort}\"]");

        await seed.WaitForLineAsync($"metrics at http://127.0.0.1:{metricsPort}/metrics", TimeSpan.FromSeconds(60));
        await seed.WaitForLineAsync($"seed node akka.tcp://actortrain@127.0.0.1:{flagPort}", TimeSpan.FromSeconds(10));
        Assert.DoesNotContain($":{environmentPort}", seed.Output);
    }

    [Fact]
    public async Task Local_passes_set_arguments_on_to_its_nodes()
    {
        var outDir = Repo.TempDir();
        using var local = NodeProcess.Start("local", "local", "--nodes", "1", "--epochs", "1", "--out", outDir, "--intra-op-threads", "1", "--no-progress",
            "--set", "actortrain.training.batch-size=128");
        var code = await local.WaitForExitAsync(TimeSpan.FromMinutes(4));
        Assert.True(code == 0, $"exit code {code}\n{local.Tail()}");
        using var report = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run-report.json")));
        // 9000 samples in batches of 128 (the default, 64, would give 140 steps).
        Assert.Equal(9000 / 128, report.RootElement.GetProperty("steps").GetInt64());
    }

    [Fact]
    public async Task A_malformed_variable_stops_the_node_with_exit_code_2_naming_it()
    {
        using var node = NodeProcess.StartWithEnvironment("seed", new Dictionary<string, string> { ["ACTORTRAIN__TRAINING__EPOCHS"] = "several" },
            "seed", "--no-progress");
        Assert.Equal(2, await node.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("environment variable ACTORTRAIN__TRAINING__EPOCHS", node.Output);
    }
}
