using ActorTrain.Sync.Collectives.Nccl;

namespace ActorTrain.Sync.Tests.Nccl;

public sealed class NativeLibraryProbeTests : IDisposable
{
    private static readonly string[] NcclNames = ["libnccl.so.2", "libnccl.so"];
    private readonly string _root = Directory.CreateTempSubdirectory("actortrain-probe-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Dir(params string[] parts)
    {
        var path = Path.Combine([_root, .. parts]);
        Directory.CreateDirectory(path);
        return path;
    }

    [Fact]
    public void Candidates_come_in_order_configured_ld_library_path_standard_python_then_system_loader()
    {
        var configured = Dir("configured");
        var ld1 = Dir("ld1");
        var ld2 = Dir("ld2");
        var standard = Dir("usr-lib");
        var site = Dir("venv", "lib", "python3.12", "site-packages");
        var ncclLib = Dir("venv", "lib", "python3.12", "site-packages", "nvidia", "nccl", "lib");
        var cu13Lib = Dir("venv", "lib", "python3.12", "site-packages", "nvidia", "cu13", "lib");
        Dir("venv", "lib", "python3.12", "site-packages", "nvidia", "no-lib-folder");
        var torchLib = Dir("venv", "lib", "python3.12", "site-packages", "torch", "lib");
        var locations = new ProbeLocations($"{ld1}::{ld2}:", [standard], [site]);

        var candidates = NativeLibraryProbe.Candidates(NcclNames, configured, locations);

        var expected = new List<(string, string)>();
        foreach (var (dir, source) in new[]
                 {
                     (configured, "configured folder"), (ld1, "LD_LIBRARY_PATH"), (ld2, "LD_LIBRARY_PATH"), (standard, "standard location"),
                     (cu13Lib, "python site-packages"), (ncclLib, "python site-packages"), (torchLib, "python site-packages"),
                 })
        {
            expected.AddRange(NcclNames.Select(n => (Path.Combine(dir, n), source)));
        }

        expected.AddRange(NcclNames.Select(n => (n, ProbeCandidate.SystemLoader)));
        Assert.Equal(expected, candidates.Select(c => (c.Path, c.Source)));
    }

    [Fact]
    public void A_configured_file_is_tried_as_given_and_first()
    {
        var file = Path.Combine(_root, "custom", "libnccl-custom.so");

        var candidates = NativeLibraryProbe.Candidates(NcclNames, file, new ProbeLocations(null, [], [], UseSystemLoader: false));

        var only = Assert.Single(candidates);
        Assert.Equal(file, only.Path);
        Assert.Equal("configured path", only.Source);
    }

    [Fact]
    public void A_folder_named_twice_is_probed_once_under_its_first_source()
    {
        var dir = Dir("both");

        var candidates = NativeLibraryProbe.Candidates(NcclNames, null, new ProbeLocations(dir, [dir], [], UseSystemLoader: false));

        Assert.Equal(2, candidates.Count);
        Assert.All(candidates, c => Assert.Equal("LD_LIBRARY_PATH", c.Source));
    }

    [Fact]
    public void Probing_reports_every_missing_path_when_nothing_is_there()
    {
        var dir = Dir("empty");
        var candidates = NativeLibraryProbe.Candidates(NcclNames, null, new ProbeLocations(dir, [], [], UseSystemLoader: false));

        var loaded = NativeLibraryProbe.TryLoad(candidates, "ncclCommInitRank", out var handle, out var which, out var report);

        Assert.False(loaded);
        Assert.Equal(IntPtr.Zero, handle);
        Assert.Null(which);
        Assert.StartsWith("not found: ", report);
        Assert.Contains(Path.Combine(dir, "libnccl.so.2"), report);
        Assert.Contains(Path.Combine(dir, "libnccl.so"), report);
    }

    [Fact]
    public void A_file_that_is_not_a_library_is_reported_with_the_loader_error_and_probing_goes_on()
    {
        var dir = Dir("fake");
        var fake = Path.Combine(dir, "libnccl.so.2");
        File.WriteAllText(fake, "not an ELF file");
        var candidates = NativeLibraryProbe.Candidates(NcclNames, null, new ProbeLocations(dir, [], [], UseSystemLoader: false));

        var loaded = NativeLibraryProbe.TryLoad(candidates, "ncclCommInitRank", out _, out _, out var report);

        Assert.False(loaded);
        Assert.Contains($"could not load: {fake} (LD_LIBRARY_PATH): ", report);
        Assert.Contains($"not found: {Path.Combine(dir, "libnccl.so")}", report);
    }

    [Fact]
    public void A_library_without_the_required_export_is_passed_over()
    {
        // libc is certain to load and certain not to be NCCL.
        var candidates = new[] { new ProbeCandidate("libc.so.6", ProbeCandidate.SystemLoader) };

        var loaded = NativeLibraryProbe.TryLoad(candidates, "ncclCommInitRank", out _, out _, out var report);

        Assert.False(loaded);
        Assert.Contains("libc.so.6 (system loader): loads but does not export ncclCommInitRank", report);
    }

    [Fact]
    public void A_loadable_candidate_with_the_export_is_taken()
    {
        var candidates = new[]
        {
            new ProbeCandidate(Path.Combine(_root, "missing", "libc.so.6"), "LD_LIBRARY_PATH"),
            new ProbeCandidate("libc.so.6", ProbeCandidate.SystemLoader),
        };

        var loaded = NativeLibraryProbe.TryLoad(candidates, "malloc", out var handle, out var which, out var report);

        Assert.True(loaded);
        Assert.NotEqual(IntPtr.Zero, handle);
        Assert.Same(candidates[1], which);
        Assert.Equal("loaded libc.so.6 (system loader)", report);
    }

    [Fact]
    public void Site_packages_are_found_under_a_prefix_for_every_python3_version()
    {
        var a = Dir("prefix", "lib", "python3.11", "site-packages");
        var b = Dir("prefix", "lib", "python3.12", "dist-packages");
        Dir("prefix", "lib", "python2.7", "site-packages");

        var found = PythonEnvironments.SitePackagesUnder(Path.Combine(_root, "prefix")).ToList();

        Assert.Equal([a, b], found);
        Assert.Empty(PythonEnvironments.SitePackagesUnder(Path.Combine(_root, "no-such-prefix")));
    }

    [Fact]
    public void Nccl_and_the_cuda_runtime_report_what_was_probed_when_absent()
    {
        var dir = Dir("nothing-here");
        var locations = new ProbeLocations(dir, [], [], UseSystemLoader: false);

        Assert.False(NcclLibrary.TryLoad(null, locations, out var nccl, out var ncclReport));
        Assert.False(CudaRuntime.TryLoad(null, locations, out var cuda, out var cudaReport));

        Assert.Null(nccl);
        Assert.Null(cuda);
        Assert.Contains("NCCL (libnccl.so.2 or libnccl.so) not found: ", ncclReport);
        Assert.Contains(Path.Combine(dir, "libnccl.so.2"), ncclReport);
        Assert.Contains("the CUDA runtime (libcudart.so or libcudart.so.13", cudaReport);
        Assert.Contains(Path.Combine(dir, "libcudart.so.12"), cudaReport);
    }
}
