using ActorTrain.Sync.Compression;
using ActorTrain.Cluster.Serialization;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Configuration;

namespace ActorTrain.Cluster.Tests.Settings;

public class ActorTrainSettingsSpec
{
    [Fact]
    public void Settings_must_load_the_documented_defaults_from_an_empty_config()
    {
        var s = ActorTrainSettings.Create(ConfigurationFactory.Empty);

        Assert.Equal("", s.JobId);
        Assert.Equal("", s.NodeName);
        Assert.Equal(1, s.MinNodes);
        Assert.Equal(TimeSpan.FromSeconds(300), s.StartupTimeout);
        Assert.Equal(TimeSpan.FromSeconds(2), s.RegistrationInterval);
        Assert.True(s.Node.Train);
        Assert.Equal(DeviceKind.Auto, s.Node.Device);
        Assert.Equal(1, s.Node.TrainersPerNode);
        Assert.Equal(0, s.Node.IntraOpThreads);
        Assert.Equal(10, s.Training.Epochs);
        Assert.Equal(64, s.Training.BatchSize);
        Assert.Equal(1, s.Training.Seed);
        Assert.Equal(100, s.Training.LogInterval);
        Assert.Equal("out", s.Training.OutDir);
        Assert.Equal(4L * 1024 * 1024, s.Sync.BucketSizeBytes);
        Assert.Equal(64 * 1024, s.Sync.ChunkSizeBytes);
        Assert.Equal("auto", s.Sync.IntraNode);
        Assert.Equal("", s.Sync.NcclLibrary);
        Assert.Equal(NonFiniteGradientPolicy.Skip, s.Sync.NonFiniteGradients);
        Assert.Equal(TimeSpan.FromSeconds(120), s.Sync.StepTimeout);
        Assert.False(s.MkldnnEnabled);
        Assert.True(s.ProgressBar);
        Assert.Equal("tcp", s.Sync.Transport);
        Assert.Equal(80 * 1024, s.Sync.TcpChunkSizeBytes);
        Assert.Equal(80 * 1024, s.Sync.TransportChunkSizeBytes);
        Assert.Equal(0, s.Sync.TcpPort);
        Assert.True(s.Sync.SharedMemory);
        Assert.Equal(WireCompression.None, s.Sync.Compression);
        Assert.True(s.Sync.BroadcastBuffers);
        Assert.False(s.Sync.OverlapBackward);
        Assert.Equal(1, s.Training.AccumulationSteps);
        Assert.True(s.Metrics.Enabled);
        Assert.Equal("127.0.0.1", s.Metrics.Hostname);
        Assert.Equal(0, s.Metrics.Port);
    }

    [Fact]
    public void Settings_must_prefer_the_given_values_over_the_defaults()
    {
        var s = ActorTrainSettings.Create(ConfigurationFactory.ParseString("""
            actortrain.job-id = mnist
            actortrain.min-nodes = 3
            actortrain.node.device = CPU
            actortrain.node.train = off
            actortrain.training.epochs = 2
            actortrain.training.seed = -7
            actortrain.sync.bucket-size = 1MiB
            actortrain.sync.chunk-size = 32KiB
            actortrain.sync.intra-node = shared-memory
            actortrain.sync.nccl-library = "/opt/nccl/lib"
            actortrain.sync.non-finite-gradients = fail
            actortrain.startup-timeout = 0s
            actortrain.torch.mkldnn = on
            actortrain.sync.compression = BF16
            actortrain.training.accumulation-steps = 4
            actortrain.sync.overlap-backward = on
            actortrain.sync.shared-memory = off
            actortrain.sync.broadcast-buffers = off
            """));

        Assert.Equal("mnist", s.JobId);
        Assert.Equal(3, s.MinNodes);
        Assert.Equal(DeviceKind.Cpu, s.Node.Device);
        Assert.False(s.Node.Train);
        Assert.Equal(2, s.Training.Epochs);
        Assert.Equal(-7, s.Training.Seed);
        Assert.Equal(1024L * 1024, s.Sync.BucketSizeBytes);
        Assert.Equal(32 * 1024, s.Sync.ChunkSizeBytes);
        Assert.Equal("shared-memory", s.Sync.IntraNode);
        Assert.Equal("/opt/nccl/lib", s.Sync.NcclLibrary);
        Assert.Equal(NonFiniteGradientPolicy.Fail, s.Sync.NonFiniteGradients);
        Assert.Equal(TimeSpan.Zero, s.StartupTimeout);
        Assert.True(s.MkldnnEnabled);
        Assert.Equal(WireCompression.Bf16, s.Sync.Compression);
        Assert.Equal(4, s.Training.AccumulationSteps);
        Assert.True(s.Sync.OverlapBackward);
        Assert.False(s.Sync.SharedMemory);
        Assert.False(s.Sync.BroadcastBuffers);
    }

    [Fact]
    public void Settings_must_be_readable_from_an_actor_system()
    {
        using var system = ActorSystem.Create("settings", TestConfig.Local("actortrain.training.batch-size = 32"));

        Assert.Equal(32, ActorTrainSettings.Create(system).Training.BatchSize);
    }

    public static TheoryData<string, string> InvalidValues => new()
    {
        // not an integer
        { "actortrain.min-nodes", "two" },
        { "actortrain.training.epochs", "1.5" },
        { "actortrain.training.seed", "99999999999" },
        // out of range
        { "actortrain.min-nodes", "0" },
        { "actortrain.node.trainers-per-node", "0" },
        { "actortrain.node.trainers-per-node", "257" },
        { "actortrain.node.intra-op-threads", "-1" },
        { "actortrain.training.epochs", "0" },
        { "actortrain.training.batch-size", "-64" },
        { "actortrain.training.log-interval", "0" },
        // not one of the allowed names
        { "actortrain.node.device", "gpu" },
        { "actortrain.sync.intra-node", "mpi" },
        { "actortrain.sync.non-finite-gradients", "ignore" },
        { "actortrain.sync.transport", "udp" },
        { "actortrain.sync.compression", "fp8" },
        { "actortrain.sync.compression", "" },
        { "actortrain.sync.overlap-backward", "maybe" },
        { "actortrain.sync.broadcast-buffers", "sometimes" },
        { "actortrain.sync.shared-memory", "auto" },
        { "actortrain.training.accumulation-steps", "0" },
        { "actortrain.training.accumulation-steps", "two" },
        { "actortrain.sync.tcp-chunk-size", "1TiB" },
        { "actortrain.sync.tcp-port", "65536" },
        { "actortrain.metrics.port", "-1" },
        { "actortrain.metrics.enabled", "sometimes" },
        { "actortrain.progress-bar", "fancy" },
        // not a size, or too small
        { "actortrain.sync.bucket-size", "lots" },
        { "actortrain.sync.bucket-size", "12" },
        { "actortrain.sync.chunk-size", "64 furlongs" },
        { "akka.remote.dot-netty.tcp.maximum-frame-size", "huge" },
        // not a duration, or not positive
        { "actortrain.startup-timeout", "soon" },
        { "actortrain.startup-timeout", "-1s" },
        { "actortrain.registration-interval", "0s" },
        { "actortrain.sync.step-timeout", "two minutes" },
        { "actortrain.sync.step-timeout", "infinite" },
        // not a boolean
        { "actortrain.node.train", "maybe" },
        { "actortrain.torch.mkldnn", "2" },
        // empty
        { "actortrain.training.out-dir", "" },
        { "actortrain.training.out-dir", "   " },
        // larger than a remoting frame can carry
        { "actortrain.sync.chunk-size", "1MiB" },
        { "actortrain.sync.chunk-size", "128000b" },
    };

    [Theory]
    [MemberData(nameof(InvalidValues))]
    public void Settings_must_name_the_key_when_a_value_is_invalid(string key, string value)
    {
        var config = ConfigurationFactory.ParseString($"{key} = \"{value}\"");

        var e = Assert.Throws<SettingsException>(() => ActorTrainSettings.Create(config));

        Assert.Equal(key, e.Path);
        Assert.Contains(key, e.Message);
        Assert.False(string.IsNullOrWhiteSpace(e.Problem));
    }

    [Fact]
    public void Settings_must_reject_a_chunk_size_that_leaves_no_room_in_a_smaller_frame()
    {
        var config = ConfigurationFactory.ParseString("""
            akka.remote.dot-netty.tcp.maximum-frame-size = 40000b
            actortrain.sync.chunk-size = 39KiB
            """);

        var e = Assert.Throws<SettingsException>(() => ActorTrainSettings.Create(config));

        Assert.Equal("actortrain.sync.chunk-size", e.Path);
        Assert.Contains("maximum-frame-size", e.Message);
    }

    [Fact]
    public void Default_config_must_bind_every_wire_message_to_the_ActorTrain_serializer()
    {
        var config = ActorTrainSettings.DefaultConfig();
        var serializerType = typeof(ActorTrainMessageSerializer);
        var serializerName = $"{serializerType.FullName}, {serializerType.Assembly.GetName().Name}";

        Assert.Equal(serializerName, config.GetString("akka.actor.serializers.actortrain"));
        var bindings = config.GetConfig("akka.actor.serialization-bindings").AsEnumerable().ToDictionary(kv => kv.Key, kv => kv.Value.GetString());
        Assert.Equal("actortrain", bindings["ActorTrain.Cluster.Protocol.IActorTrainMessage, ActorTrain.Cluster"]);
        var identifiers = config.GetConfig("akka.actor.serialization-identifiers").AsEnumerable().ToDictionary(kv => kv.Key, kv => kv.Value.GetInt());
        Assert.Equal(3141, identifiers[serializerName]);
    }

    [Fact]
    public void Default_config_must_bind_gradient_chunks_to_their_own_serializer()
    {
        var config = ActorTrainSettings.DefaultConfig();
        var serializerType = typeof(GradientChunkSerializer);
        var serializerName = $"{serializerType.FullName}, {serializerType.Assembly.GetName().Name}";

        Assert.Equal(serializerName, config.GetString("akka.actor.serializers.actortrain-chunk"));
        var bindings = config.GetConfig("akka.actor.serialization-bindings").AsEnumerable().ToDictionary(kv => kv.Key, kv => kv.Value.GetString());
        Assert.Equal("actortrain-chunk", bindings["ActorTrain.Cluster.Protocol.GradientChunk, ActorTrain.Cluster"]);
        var identifiers = config.GetConfig("akka.actor.serialization-identifiers").AsEnumerable().ToDictionary(kv => kv.Key, kv => kv.Value.GetInt());
        Assert.Equal(3142, identifiers[serializerName]);
    }

    [Fact]
    public void Default_config_must_define_the_pinned_trainer_dispatcher()
    {
        var config = ActorTrainSettings.DefaultConfig();

        Assert.True(config.HasPath("actortrain.trainer-dispatcher"));
        Assert.Equal("PinnedDispatcher", config.GetString("actortrain.trainer-dispatcher.type"));
    }

    [Fact]
    public void Default_config_must_keep_the_default_chunk_below_the_remoting_frame_size()
    {
        var config = ActorTrainSettings.DefaultConfig();

        Assert.True(config.GetByteSize("actortrain.sync.chunk-size") < config.GetByteSize("akka.remote.dot-netty.tcp.maximum-frame-size"));
        Assert.Equal("127.0.0.1", config.GetString("akka.remote.dot-netty.tcp.hostname"));
        Assert.Equal(0, config.GetInt("akka.remote.dot-netty.tcp.port"));
    }
}
