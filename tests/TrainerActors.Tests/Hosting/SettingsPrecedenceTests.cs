using ActorTrain.Hosting;
using ActorTrain.TrainerActors.Hosting;

namespace ActorTrain.TrainerActors.Tests.Hosting;

/// <summary>
/// Where a setting comes from: flags and --set > environment > --config file > the job's
/// defaults > the host's defaults > reference.conf, and how environment variables and --set
/// arguments are read.
/// </summary>
public sealed class SettingsPrecedenceTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("actortrain-precedence-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static Dictionary<string, string> Env(params (string Name, string Value)[] variables) =>
        variables.ToDictionary(v => v.Name, v => v.Value);

    [Fact]
    public void Each_layer_wins_over_the_ones_below_it()
    {
        // epochs is set on every layer, seed on all but the command line, and so on down.
        var file = Path.Combine(_directory, "node.conf");
        File.WriteAllText(file, "actortrain.training { epochs = 3, seed = 3, log-interval = 3 }\n");
        var job = "actortrain.training { epochs = 4, seed = 4, log-interval = 4, batch-size = 4 }";
        var host = "actortrain.training { epochs = 5, seed = 5, log-interval = 5, batch-size = 5, accumulation-steps = 5 }";
        var environment = Env(("ACTORTRAIN__TRAINING__EPOCHS", "2"), ("ACTORTRAIN__TRAINING__SEED", "2"));

        var (config, settings) = ConfigLoader.Load(file, job, "job", ["actortrain.training.epochs = 1"], new ConfigLayers(environment, host));

        Assert.Equal(1, settings.Training.Epochs);
        Assert.Equal(2, settings.Training.Seed);
        Assert.Equal(3, settings.Training.LogInterval);
        Assert.Equal(4, settings.Training.BatchSize);
        Assert.Equal(5, settings.Training.AccumulationSteps);
        Assert.Equal(TimeSpan.FromSeconds(8), settings.Elastic.RegroupTimeout); // reference.conf
        Assert.Equal("cluster", config.GetString("akka.actor.provider"));
    }

    [Fact]
    public void A_set_argument_is_a_command_line_override_and_beats_the_environment()
    {
        var options = new NodeOptions();
        var command = new System.CommandLine.RootCommand();
        options.AddTo(command, includeClusterAddress: true);
        var parsed = command.Parse(["--set", "actortrain.training.seed=11", "--set", "akka.cluster.seed-nodes=[\"akka.tcp://actortrain@10.0.0.1:4053\"]",
            "--epochs", "6", "--set", "actortrain.training.epochs=9"]);
        Assert.Empty(parsed.Errors);

        var (config, settings) = ConfigLoader.Load(null, "", "job", options.Overrides(parsed),
            new ConfigLayers(Env(("ACTORTRAIN__TRAINING__SEED", "2"))));

        Assert.Equal(11, settings.Training.Seed);
        Assert.Equal(6, settings.Training.Epochs); // the dedicated flag wins over --set of the same key
        Assert.Equal(["akka.tcp://actortrain@10.0.0.1:4053"], config.GetStringList("akka.cluster.seed-nodes"));
    }

    [Theory]
    [InlineData("ACTORTRAIN__TRAINING__OUT_DIR", "actortrain.training.out-dir")]
    [InlineData("AKKA__REMOTE__DOT_NETTY__TCP__PORT", "akka.remote.dot-netty.tcp.port")]
    [InlineData("actortrain__sync__bucket_size", "actortrain.sync.bucket-size")]
    [InlineData("Akka__Cluster__Seed_Nodes", "akka.cluster.seed-nodes")]
    public void Environment_variable_names_map_onto_keys(string variable, string key) =>
        Assert.Equal(key, SettingsOverrides.KeyOf(variable));

    [Fact]
    public void Environment_values_are_hocon_lists_or_plain_strings_of_any_type()
    {
        var environment = Env(
            ("AKKA__CLUSTER__SEED_NODES", "[\"akka.tcp://actortrain@a:1\", \"akka.tcp://actortrain@b:2\"]"),
            ("ACTORTRAIN__TRAINING__OUT_DIR", "/data/run #1 // not a comment"),
            ("ACTORTRAIN__SYNC__BUCKET_SIZE", "2MiB"),
            ("ACTORTRAIN__ELASTIC__ENABLED", "off"),
            ("ACTORTRAIN__SYNC__STEP_TIMEOUT", "45s"),
            ("AKKA__REMOTE__DOT_NETTY__TCP__PORT", "4099"),
            ("ACTORTRAIN_MNIST_DATA", "/not/a/setting"),
            ("PATH", "/usr/bin"));

        var (config, settings) = ConfigLoader.Load(null, "", "job", [], new ConfigLayers(environment));

        Assert.Equal(["akka.tcp://actortrain@a:1", "akka.tcp://actortrain@b:2"], config.GetStringList("akka.cluster.seed-nodes"));
        Assert.Equal("/data/run #1 // not a comment", settings.Training.OutDir);
        Assert.Equal(2 * 1024 * 1024, settings.Sync.BucketSizeBytes);
        Assert.False(settings.Elastic.Enabled);
        Assert.Equal(TimeSpan.FromSeconds(45), settings.Sync.StepTimeout);
        Assert.Equal(4099, config.GetInt("akka.remote.dot-netty.tcp.port"));
    }

    [Fact]
    public void The_cluster_secret_alias_still_works_and_the_generic_variable_beats_it()
    {
        Assert.Equal("old", ConfigLoader.Load(null, "", "job", [], new ConfigLayers(Env(("ACTORTRAIN_CLUSTER_SECRET", "old")))).Settings.ClusterSecret.Value);
        var both = Env(("ACTORTRAIN_CLUSTER_SECRET", "old"), ("ACTORTRAIN__CLUSTER_SECRET", "new"));
        Assert.Equal("new", ConfigLoader.Load(null, "", "job", [], new ConfigLayers(both)).Settings.ClusterSecret.Value);
    }

    [Theory]
    [InlineData("ACTORTRAIN__TRAINING____EPOCHS", "1", "empty segment")]
    [InlineData("ACTORTRAIN__TRAINING__EPO.CHS", "1", "letters, digits")]
    [InlineData("AKKA__CLUSTER__SEED_NODES", "[\"a\"", "never closed")]
    [InlineData("ACTORTRAIN__TRAINING__EPOCHS", "many", "actortrain.training.epochs")]
    public void A_malformed_variable_is_an_error_naming_it(string variable, string value, string why)
    {
        var e = Assert.Throws<UsageException>(() => ConfigLoader.Load(null, "", "job", [], new ConfigLayers(Env((variable, value)))));
        Assert.Contains(why, e.Message);
        Assert.Contains($"environment variable {variable}", e.Message);
    }

    [Fact]
    public void Two_variables_for_one_key_are_an_error_naming_both()
    {
        var e = Assert.Throws<UsageException>(() => ConfigLoader.Load(null, "", "job", [],
            new ConfigLayers(Env(("ACTORTRAIN__TRAINING__EPOCHS", "1"), ("actortrain__training__epochs", "2")))));
        Assert.Contains("ACTORTRAIN__TRAINING__EPOCHS", e.Message);
        Assert.Contains("actortrain__training__epochs", e.Message);
    }

    [Theory]
    [InlineData("actortrain.training.epochs", "key=value")]
    [InlineData("=3", "key=value")]
    [InlineData("actortrain training.epochs=3", "is not a key")]
    [InlineData("akka.cluster.seed-nodes=[\"a\"", "never closed")]
    public void A_malformed_set_argument_is_an_error_naming_it(string argument, string why)
    {
        var e = Assert.Throws<UsageException>(() => SettingsOverrides.FromSetArgument(argument));
        Assert.Contains($"--set {argument}", e.Message);
        Assert.Contains(why, e.Message);
    }

    [Fact]
    public void The_console_hosts_defaults_carry_the_application_level_akka_keys_and_the_library_does_not()
    {
        var library = Cluster.Settings.ActorTrainSettings.DefaultConfig();
        foreach (var key in new[] { "akka.loglevel", "akka.loggers", "akka.cluster.downing-provider-class", "akka.cluster.split-brain-resolver.stable-after",
                     "akka.coordinated-shutdown.run-by-clr-shutdown-hook" })
            Assert.False(library.HasPath(key), $"{key} is in the library's reference.conf");
        Assert.Equal("cluster", library.GetString("akka.actor.provider"));

        var (config, _) = ConfigLoader.Load(null, "", "job", [], new ConfigLayers(Env(), ConsoleNodeServices.HostConfig));
        Assert.Equal("WARNING", config.GetString("akka.loglevel"));
        Assert.Equal(TimeSpan.FromSeconds(15), config.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after"));
        Assert.False(config.GetBoolean("akka.coordinated-shutdown.run-by-clr-shutdown-hook"));
        var (overridden, _) = ConfigLoader.Load(null, "akka.loglevel = DEBUG", "job", [], new ConfigLayers(Env(), ConsoleNodeServices.HostConfig));
        Assert.Equal("DEBUG", overridden.GetString("akka.loglevel"));
    }

    [Fact]
    public void A_worker_with_the_shipped_discovery_conf_needs_no_seed_nodes()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "ActorTrain.sln"))) root = Path.GetDirectoryName(root)!;
        var (config, settings) = NodeRunner.LoadForRole(new Examples.Mnist.MnistJob("/nonexistent"), NodeRole.Worker, Path.Combine(root, "hocon", "discovery.conf"), [],
            new ConfigLayers(Env()));
        Assert.Empty(config.GetStringList("akka.cluster.seed-nodes"));
        Assert.True(settings.Management.Bootstraps);
        Assert.Equal(3, settings.Management.RequiredContactPoints);
        Assert.Equal(8558, config.GetInt("akka.management.http.port"));

        var e = Assert.Throws<UsageException>(() => NodeRunner.LoadForRole(new Examples.Mnist.MnistJob("/nonexistent"), NodeRole.Worker, null, [], new ConfigLayers(Env())));
        Assert.Contains("actortrain.discovery.method", e.Message);
    }
}
