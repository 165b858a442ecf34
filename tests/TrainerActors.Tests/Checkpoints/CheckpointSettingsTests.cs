using ActorTrain.Cluster.Settings;
using Akka.Configuration;

namespace ActorTrain.TrainerActors.Tests.Checkpoints;

public class CheckpointSettingsTests
{
    [Fact]
    public void The_defaults_write_at_each_epoch_end_keep_three_and_live_under_the_out_dir()
    {
        var s = ActorTrainSettings.Create(ConfigurationFactory.Empty).Checkpoint;

        Assert.Equal("", s.Dir);
        Assert.Equal(0, s.EverySteps);
        Assert.True(s.AtEpochEnd);
        Assert.Equal(3, s.Keep);
        Assert.Equal(Path.Combine("out", "checkpoints"), s.ResolveDir("out"));
    }

    [Fact]
    public void Given_values_override_the_defaults()
    {
        var s = ActorTrainSettings.Create(ConfigurationFactory.ParseString("""
            actortrain.checkpoint { dir = "/data/ckpt", every-steps = 500, at-epoch-end = off, keep = 1 }
            """)).Checkpoint;

        Assert.Equal(500, s.EverySteps);
        Assert.False(s.AtEpochEnd);
        Assert.Equal(1, s.Keep);
        Assert.Equal("/data/ckpt", s.ResolveDir("out"));
    }

    [Theory]
    [InlineData("actortrain.checkpoint.every-steps", "-1")]
    [InlineData("actortrain.checkpoint.every-steps", "often")]
    [InlineData("actortrain.checkpoint.keep", "0")]
    [InlineData("actortrain.checkpoint.at-epoch-end", "sometimes")]
    public void An_invalid_value_names_the_key(string key, string value)
    {
        var e = Assert.Throws<SettingsException>(() => ActorTrainSettings.Create(ConfigurationFactory.ParseString($"{key} = \"{value}\"")));

        Assert.Equal(key, e.Path);
        Assert.Contains(key, e.Message);
    }
}
