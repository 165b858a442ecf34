using ActorTrain.Sync.Collectives;

namespace ActorTrain.Sync.Tests.Collectives;

public class IntraNodeCollectivesTests
{
    [Theory]
    [InlineData("auto", IntraNodeBackend.Auto)]
    [InlineData("shared-memory", IntraNodeBackend.SharedMemory)]
    [InlineData("nccl", IntraNodeBackend.Nccl)]
    [InlineData(" Shared-Memory ", IntraNodeBackend.SharedMemory)]
    public void Setting_values_parse_to_backends(string value, IntraNodeBackend expected)
    {
        Assert.Equal(expected, IntraNodeCollectives.Parse(value, "actortrain.sync.intra-node"));
    }

    [Theory]
    [InlineData("gloo")]
    [InlineData("")]
    [InlineData("shared_memory")]
    public void Unknown_values_name_the_setting_and_the_allowed_values(string value)
    {
        var error = Assert.Throws<ArgumentException>(() => IntraNodeCollectives.Parse(value, "actortrain.sync.intra-node"));

        Assert.Contains("actortrain.sync.intra-node", error.Message);
        Assert.Contains("auto | shared-memory | nccl", error.Message);
    }

    [Theory]
    [InlineData(IntraNodeBackend.Auto)]
    [InlineData(IntraNodeBackend.SharedMemory)]
    public void Cpu_trainers_get_the_shared_memory_collective(IntraNodeBackend backend)
    {
        using var collective = IntraNodeCollectives.Create(backend, localSize: 3, devicesAreCuda: false);

        Assert.IsType<SharedMemoryCollective>(collective);
        Assert.Equal(3, collective.LocalSize);
        Assert.Equal(IntraNodeCollectives.ToSettingValue(IntraNodeBackend.SharedMemory), collective.Name);
    }

    [Fact]
    public void Nccl_for_cpu_trainers_is_refused_at_creation()
    {
        var error = Assert.Throws<InvalidOperationException>(() => IntraNodeCollectives.Create(IntraNodeBackend.Nccl, 2, devicesAreCuda: false));

        Assert.Contains("needs CUDA trainers", error.Message);
    }
}
