using ActorTrain.TrainerActors.Hosting;

namespace ActorTrain.TrainerActors.Tests.Hosting;

/// <summary>A config file may include another beside it, as worker.conf includes tls.conf.</summary>
public sealed class ConfigIncludeTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("actortrain-include-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_directory, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void The_shipped_tls_conf_switches_tls_on_when_included_beside_the_node_config()
    {
        File.Copy(Path.Combine(RepositoryRoot(), "hocon", "tls.conf"), Path.Combine(_directory, "tls.conf"));
        var worker = Write("worker.conf", "include \"tls.conf\"\nactortrain.tls.certificate-path = \"mine.pfx\"\n");

        var (_, settings) = ConfigLoader.Load(worker, "", "job", []);

        Assert.True(settings.Tls.Enabled);
        Assert.Equal("mine.pfx", settings.Tls.CertificatePath);
        Assert.Equal("certs/ca.crt", settings.Tls.CaCertificatePath);
    }

    [Fact]
    public void A_missing_included_file_is_an_error_naming_both_files()
    {
        var worker = Write("worker.conf", "include \"absent.conf\"\n");

        var e = Assert.Throws<UsageException>(() => ConfigLoader.Load(worker, "", "job", []));

        Assert.Contains(worker, e.Message);
        Assert.Contains(Path.Combine(_directory, "absent.conf"), e.Message);
    }

    [Fact]
    public void A_file_including_itself_is_an_error_not_a_hang()
    {
        var loop = Write("loop.conf", "include \"loop.conf\"\n");

        var e = Assert.Throws<UsageException>(() => ConfigLoader.Load(loop, "", "job", []));

        Assert.Contains("nested", e.Message);
    }

    private static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "ActorTrain.sln"))) directory = directory.Parent;
        return directory?.FullName ?? throw new InvalidOperationException("ActorTrain.sln not found above the test binaries");
    }
}
