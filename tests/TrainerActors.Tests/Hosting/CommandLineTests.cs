using ActorTrain.Examples.Mnist;
using ActorTrain.Hosting;
using ActorTrain.TrainerActors.Hosting;

namespace ActorTrain.TrainerActors.Tests.Hosting;

/// <summary>Bad flags and bad HOCON end in one clear error and exit code 2, before any node starts.</summary>
[Collection(ConsoleCollection.Name)]
public class CommandLineTests
{
    private static (int Code, string Error) Run(params string[] args)
    {
        var error = new StringWriter();
        var original = Console.Error;
        Console.SetError(error);
        try
        {
            return (ActorTrainHost.Run(args, new MnistJob("/nonexistent")), error.ToString());
        }
        finally
        {
            Console.SetError(original);
        }
    }

    private static string TempConfig(string text)
    {
        var path = Path.Combine(Path.GetTempPath(), $"actortrain-test-{Guid.NewGuid():N}.conf");
        File.WriteAllText(path, text);
        return path;
    }

    [Theory]
    [InlineData("local --nodes 0", "--nodes")]
    [InlineData("local --epochs 0", "--epochs")]
    [InlineData("seed --port 70000", "--port")]
    [InlineData("local --trainers-per-node -1", "--trainers-per-node")]
    [InlineData("worker --bogus", "--bogus")]
    [InlineData("local --epochs ten", "ten")]
    [InlineData("local --compression fp8", "fp8")]
    [InlineData("seed --accumulation-steps 0", "--accumulation-steps")]
    public void Bad_flags_exit_with_2_naming_the_flag(string args, string named)
    {
        var (code, error) = Run(args.Split(' '));
        Assert.Equal(2, code);
        Assert.Contains(named, error);
    }

    [Fact]
    public void A_missing_config_file_is_named()
    {
        var (code, error) = Run("seed", "--config", "/nonexistent/seed.conf");
        Assert.Equal(2, code);
        Assert.Contains("/nonexistent/seed.conf", error);
        Assert.Contains("not found", error);
    }

    [Fact]
    public void Invalid_hocon_is_reported_with_the_file()
    {
        var path = TempConfig("actortrain { training { epochs = 3 ");
        try
        {
            var (code, error) = Run("seed", "--config", path);
            Assert.Equal(2, code);
            Assert.Contains(path, error);
            Assert.Contains("invalid HOCON", error);
        }
        finally { File.Delete(path); }
    }

    [Theory]
    [InlineData("actortrain.training.batch-size = 0", "actortrain.training.batch-size")]
    [InlineData("actortrain.sync.intra-node = gloo", "actortrain.sync.intra-node")]
    [InlineData("actortrain.sync.bucket-size = lots", "actortrain.sync.bucket-size")]
    [InlineData("actortrain.node.train = maybe", "actortrain.node.train")]
    public void An_invalid_value_is_reported_with_the_file_and_the_key(string hocon, string key)
    {
        var path = TempConfig(hocon);
        try
        {
            var (code, error) = Run("seed", "--config", path);
            Assert.Equal(2, code);
            Assert.Contains(path, error);
            Assert.Contains(key, error);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void A_worker_without_seed_nodes_is_told_what_to_set()
    {
        var (code, error) = Run("worker");
        Assert.Equal(2, code);
        Assert.Contains("akka.cluster.seed-nodes", error);
    }

    [Fact]
    public void A_malformed_seed_node_address_is_named()
    {
        var (code, error) = Run("worker", "--seed-node", "localhost");
        Assert.Equal(2, code);
        Assert.Contains("--seed-node", error);
    }

    [Fact]
    public void Command_line_overrides_beat_the_config_file()
    {
        var path = TempConfig("actortrain.training { epochs = 3, seed = 5 }\nakka.cluster.seed-nodes = [\"akka.tcp://actortrain@127.0.0.1:1\"]");
        try
        {
            var (_, settings) = NodeRunner.LoadForRole(new MnistJob("/nonexistent"), NodeRole.Worker, path,
                ["actortrain.training.epochs = 7"]);
            Assert.Equal(7, settings.Training.Epochs);
            Assert.Equal(5, settings.Training.Seed);
            Assert.Equal(20, settings.Training.LogInterval); // the MNIST job's default
            Assert.Equal("mnist", settings.JobId);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Compression_and_accumulation_flags_become_their_hocon_keys()
    {
        var options = new NodeOptions();
        var command = new System.CommandLine.RootCommand();
        options.AddTo(command, includeClusterAddress: false);
        var parsed = command.Parse(["--compression", "bf16", "--accumulation-steps", "3"]);
        Assert.Empty(parsed.Errors);
        Assert.Equal(["actortrain.sync.compression = bf16", "actortrain.training.accumulation-steps = 3"], options.Overrides(parsed));
    }
}

public class HoconBracketTests
{
    [Theory]
    [InlineData("a { b = 1 }", null)]
    [InlineData("a { b = \"}\" } # { in a comment\n", null)]
    [InlineData("a = [1, 2] // ] in a comment", null)]
    [InlineData("a = \"\"\"{ [ \"\"\"", null)]
    [InlineData("a { b = 1", "'{' opened on line 1 is never closed")]
    [InlineData("a {\n b = [1, 2 }\n", "line 2: '}' closes the '[' opened on line 2")]
    [InlineData("a = 1 }", "line 1: '}' without a matching '{'")]
    [InlineData("a = \"open", "line 1: unterminated string")]
    public void Unbalanced_brackets_are_found_outside_strings_and_comments(string text, string? problem)
    {
        Assert.Equal(problem, ConfigLoader.UnbalancedBrackets(text));
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public class ConsoleCollection
{
    public const string Name = "console";
}
