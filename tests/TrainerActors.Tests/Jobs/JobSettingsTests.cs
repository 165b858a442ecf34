using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Hosting;
using ActorTrain.TrainerActors.Jobs;
using Akka.Configuration;

namespace ActorTrain.TrainerActors.Tests.Jobs;

/// <summary>
/// A job's own settings (actortrain.job): read in <see cref="TrainingJob.Configure"/> with typed getters,
/// layered like every other key, digested for the coordinator's check that all nodes agree, and a
/// bad value is a usage error naming the key and where it came from.
/// </summary>
public sealed class JobSettingsTests
{
    private static JobSettings Of(string hocon) => new(ConfigurationFactory.ParseString(hocon));

    [Fact]
    public void Typed_getters_read_the_jobs_keys()
    {
        var s = Of("actortrain.job { width = 256, rate = 3e-4, name = tiny, warmup = on, tokens = 10000000000, shape { heads = 4 } }");
        Assert.Equal(256, s.GetInt("width"));
        Assert.Equal(3e-4, s.GetDouble("rate"));
        Assert.Equal("tiny", s.GetString("name"));
        Assert.True(s.GetBool("warmup"));
        Assert.Equal(10_000_000_000L, s.GetLong("tokens"));
        Assert.Equal(4, s.GetInt("shape.heads"));
        Assert.True(s.Has("width"));
        Assert.False(s.Has("depth"));
        Assert.Equal(["name", "rate", "shape.heads", "tokens", "warmup", "width"], s.Entries.Select(e => e.Key));
    }

    [Theory]
    [InlineData("actortrain.job.width = wide", "width", "expected a whole number, got \"wide\"")]
    [InlineData("actortrain.job.width = 0", "width", "must be at least 1, got 0")]
    [InlineData("actortrain.job {}", "width", "is not set")]
    [InlineData("actortrain.job.width { a = 1 }", "width", "expected a single value")]
    public void A_missing_or_bad_value_names_the_key(string hocon, string key, string problem)
    {
        var e = Assert.Throws<SettingsException>(() => Of(hocon).GetInt(key, min: 1));
        Assert.Equal($"actortrain.job.{key}", e.Path);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void The_digest_is_equal_for_equal_settings_in_any_order_and_differs_for_other_values()
    {
        string Digest(string hocon) => JobSection.Digest(ConfigurationFactory.ParseString(hocon));
        Assert.Equal(Digest("actortrain.job { a = 1, b = x }"), Digest("actortrain.job.b = x\nactortrain.job.a = 1"));
        Assert.NotEqual(Digest("actortrain.job { a = 1, b = x }"), Digest("actortrain.job { a = 2, b = x }"));
        Assert.NotEqual(Digest("actortrain.job { a = 1 }"), Digest("actortrain.job { a = 1, c = [1, 2] }"));
        Assert.Equal("", Digest("actortrain.training.epochs = 3"));
    }

    [Fact]
    public void Configure_sees_the_layered_value_and_its_error_names_the_environment_variable()
    {
        var job = new ReadsWidth();
        var environment = new Dictionary<string, string> { ["ACTORTRAIN__JOB__WIDTH"] = "64" };
        var (_, settings) = ConfigLoader.Load(null, "", job.DefaultConfig, "job", [], new ConfigLayers(environment),
            c => job.Configure(new JobSettings(c)));
        Assert.Equal(64, job.Width);
        Assert.NotEqual("", settings.JobSettingsDigest);

        // --set wins over the environment.
        ConfigLoader.Load(null, "", job.DefaultConfig, "job", ["actortrain.job.width = 8"], new ConfigLayers(environment), c => job.Configure(new JobSettings(c)));
        Assert.Equal(8, job.Width);

        var bad = new Dictionary<string, string> { ["ACTORTRAIN__JOB__WIDTH"] = "wide" };
        var e = Assert.Throws<UsageException>(() =>
            ConfigLoader.Load(null, "", job.DefaultConfig, "job", [], new ConfigLayers(bad), c => job.Configure(new JobSettings(c))));
        Assert.Contains("ACTORTRAIN__JOB__WIDTH", e.Message);
        Assert.Contains("actortrain.job.width", e.Message);
    }

    private sealed class ReadsWidth : TrainingJob
    {
        public int Width { get; private set; }
        public override string Name => "reads-width";
        public override string DefaultConfig => "actortrain.job.width = 32";
        public override void Configure(JobSettings settings) => Width = settings.GetInt("width", min: 1);
        public override TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> CreateModel() => throw new NotSupportedException();
        public override TorchSharp.torch.optim.Optimizer CreateOptimizer(TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> model) => throw new NotSupportedException();
        public override IBatchSource LoadTrainingData() => throw new NotSupportedException();
    }
}
