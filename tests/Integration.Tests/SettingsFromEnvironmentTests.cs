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
    public async Task A_malformed_variable_stops_the_node_with_exit_code_2_naming_it()
    {
        using var node = NodeProcess.StartWithEnvironment("seed", new Dictionary<string, string> { ["ACTORTRAIN__TRAINING__EPOCHS"] = "several" },
            "seed", "--no-progress");
        Assert.Equal(2, await node.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("environment variable ACTORTRAIN__TRAINING__EPOCHS", node.Output);
    }
}
