using ActorTrain.Sync.Collectives;
using ActorTrain.Sync.Collectives.Nccl;

namespace ActorTrain.Sync.Tests.Nccl;

public sealed class IntraNodeSelectionTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("actortrain-select-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    // Nothing to find: deterministic even on a machine that has NCCL installed.
    private ProbeLocations Nowhere => new(_root, [], [], UseSystemLoader: false);

    [Fact]
    public void Auto_with_cuda_trainers_falls_back_to_shared_memory_when_nccl_is_absent_and_says_why()
    {
        var selection = IntraNodeCollectives.Select(IntraNodeBackend.Auto, localSize: 2, devicesAreCuda: true, ncclLibraryPath: "", Nowhere);
        using var collective = selection.Collective;

        Assert.IsType<SharedMemoryCollective>(collective);
        Assert.Equal(IntraNodeBackend.SharedMemory, selection.Backend);
        Assert.Equal(2, collective.LocalSize);
        Assert.Contains("auto, CUDA trainers, but NCCL does not load", selection.Reason);
        Assert.Contains(Path.Combine(_root, "libnccl.so.2"), selection.Reason);
    }

    [Fact]
    public void Auto_with_cpu_trainers_takes_shared_memory_without_probing()
    {
        var selection = IntraNodeCollectives.Select(IntraNodeBackend.Auto, 3, devicesAreCuda: false, ncclLibraryPath: "/does/not/matter", Nowhere);
        using var collective = selection.Collective;

        Assert.IsType<SharedMemoryCollective>(collective);
        Assert.Contains("trainers run on the CPU", selection.Reason);
        Assert.DoesNotContain("/does/not/matter", selection.Reason);
    }

    [Fact]
    public void Nccl_where_it_cannot_load_is_an_error_naming_the_setting_and_every_probed_path()
    {
        var configured = Path.Combine(_root, "custom", "libnccl.so.2");

        var error = Assert.Throws<InvalidOperationException>(() =>
            IntraNodeCollectives.Select(IntraNodeBackend.Nccl, 1, devicesAreCuda: true, configured, Nowhere));

        Assert.Contains("the intra-node backend is nccl, but NCCL does not load", error.Message);
        Assert.Contains(configured, error.Message);
        Assert.Contains(Path.Combine(_root, "libnccl.so"), error.Message);
        Assert.Contains("Configure the NCCL library", error.Message);
        Assert.Contains("LD_LIBRARY_PATH", error.Message);
    }

    [Fact]
    public void Nccl_with_a_configured_file_that_is_no_library_reports_the_loader_error()
    {
        var fake = Path.Combine(_root, "libnccl.so.2");
        File.WriteAllText(fake, "this is not NCCL");

        var error = Assert.Throws<InvalidOperationException>(() =>
            IntraNodeCollectives.Select(IntraNodeBackend.Nccl, 1, devicesAreCuda: true, fake, Nowhere));

        Assert.Contains($"could not load: {fake} (configured path)", error.Message);
    }

    [Fact]
    public void Nccl_for_cpu_trainers_is_an_error()
    {
        var error = Assert.Throws<InvalidOperationException>(() =>
            IntraNodeCollectives.Select(IntraNodeBackend.Nccl, 2, devicesAreCuda: false, null, Nowhere));

        Assert.Contains("NCCL", error.Message);
        Assert.Contains("needs CUDA trainers", error.Message);
    }

    [Fact]
    public void Shared_memory_is_taken_when_asked_for_even_with_cuda_trainers()
    {
        var selection = IntraNodeCollectives.Select(IntraNodeBackend.SharedMemory, 2, devicesAreCuda: true, null, Nowhere);
        using var collective = selection.Collective;

        Assert.IsType<SharedMemoryCollective>(collective);
        Assert.Equal("intra-node backend shared-memory", selection.Reason);
    }
}
