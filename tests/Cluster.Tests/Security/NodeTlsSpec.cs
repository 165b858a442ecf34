using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Security;
using ActorTrain.Cluster.Settings;
using ActorTrain.Tests.Shared;

namespace ActorTrain.Cluster.Tests.Security;

/// <summary>Loading a node's certificate files: each mistake is an error naming the key and the file.</summary>
public sealed class NodeTlsSpec : IDisposable
{
    private readonly TestCertificates certificates = new();

    public void Dispose() => certificates.Dispose();

    private static TlsSettings Settings(string hocon) => ActorTrainSettings.Create(TestConfig.Local(hocon)).Tls;

    [Fact]
    public void Tls_must_be_off_by_default_and_need_both_files_when_on()
    {
        Assert.False(ActorTrainSettings.Create(TestConfig.Local()).Tls.Enabled);

        var e = Assert.Throws<SettingsException>(() => Settings("actortrain.tls.enabled = on"));

        Assert.Equal(TlsSettings.CertificatePathKey, e.Path);
    }

    [Fact]
    public void Loading_must_give_the_certificate_the_trust_and_the_data_plane_options()
    {
        var ca = certificates.Authority("CA");
        var settings = Settings(TlsNodes.TlsHocon(certificates.WritePfx(certificates.Node(ca, "node"), "node.pfx"), certificates.WritePem("ca.pem", ca)));

        var tls = NodeTls.Load(settings);

        Assert.True(tls.Certificate.HasPrivateKey);
        Assert.Equal("CN=node", tls.Certificate.Subject);
        Assert.Same(tls.Trust, tls.DataPlane.Trust);
        Assert.Null(tls.Trust.Problem(certificates.Node(ca, "peer")));
        Assert.NotNull(tls.Trust.Problem(certificates.Node(certificates.Authority("Other"), "stranger")));
        Assert.DoesNotContain(TestCertificates.Password, settings.ToString());
    }

    [Fact]
    public void A_missing_file_is_an_error_naming_the_key_and_the_path()
    {
        var ca = certificates.Authority("CA");
        var caFile = certificates.WritePem("ca.pem", ca);
        var missing = Path.Combine(certificates.Directory, "nowhere.pfx");

        var e = Assert.Throws<SettingsException>(() => NodeTls.Load(Settings(TlsNodes.TlsHocon(missing, caFile))));

        Assert.Equal(TlsSettings.CertificatePathKey, e.Path);
        Assert.Contains(missing, e.Message);
        var noCa = Assert.Throws<SettingsException>(() => NodeTls.Load(Settings(TlsNodes.TlsHocon(missing, missing + ".pem"))));
        Assert.Equal(TlsSettings.CaCertificatePathKey, noCa.Path);
    }

    [Fact]
    public void A_wrong_password_a_keyless_file_or_a_foreign_certificate_is_an_error_naming_the_key()
    {
        var ca = certificates.Authority("CA");
        var caFile = certificates.WritePem("ca.pem", ca);
        var node = certificates.Node(ca, "node");
        var pfx = certificates.WritePfx(node, "node.pfx");
        var publicOnly = certificates.WritePem("node.pem", node);
        var foreign = certificates.WritePfx(certificates.Node(certificates.Authority("Other"), "stranger"), "stranger.pfx");

        var password = Assert.Throws<SettingsException>(() => NodeTls.Load(Settings(TlsNodes.TlsHocon(pfx, caFile, password: "wrong"))));
        var notPkcs12 = Assert.Throws<SettingsException>(() => NodeTls.Load(Settings(TlsNodes.TlsHocon(publicOnly, caFile))));
        var notTrusted = Assert.Throws<SettingsException>(() => NodeTls.Load(Settings(TlsNodes.TlsHocon(foreign, caFile))));
        var leafAsCa = Assert.Throws<SettingsException>(() => NodeTls.Load(Settings(TlsNodes.TlsHocon(pfx, publicOnly))));

        Assert.Equal(TlsSettings.CertificatePasswordKey, password.Path);
        Assert.Contains(pfx, password.Message);
        Assert.Equal(TlsSettings.CertificatePasswordKey, notPkcs12.Path);
        Assert.Equal(TlsSettings.CertificatePathKey, notTrusted.Path);
        Assert.Contains("does not chain to the configured CA", notTrusted.Message);
        Assert.Equal(TlsSettings.CaCertificatePathKey, leafAsCa.Path);
    }

    [Fact]
    public void Bootstrap_must_fail_before_listening_when_a_certificate_file_is_missing()
    {
        var config = TestConfig.Seed(TlsNodes.TlsHocon("/nonexistent/node.pfx", "/nonexistent/ca.pem"));

        var e = Assert.Throws<SettingsException>(() => ClusterBootstrap.Start(config, ActorTrainSettings.Create(config)));

        Assert.Equal(TlsSettings.CaCertificatePathKey, e.Path);
        Assert.Contains("/nonexistent/ca.pem", e.Message);
    }

    [Fact]
    public void Seed_nodes_written_as_akka_tcp_are_rewritten_to_akka_ssl_tcp()
    {
        var config = NodeTls.RemotingConfig(TestConfig.Seed("""akka.cluster.seed-nodes = ["akka.tcp://actortrain@10.0.0.1:4053", "akka.ssl.tcp://actortrain@10.0.0.2:4053"]"""));

        Assert.True(config.GetBoolean("akka.remote.dot-netty.tcp.enable-ssl"));
        Assert.Equal(["akka.ssl.tcp://actortrain@10.0.0.1:4053", "akka.ssl.tcp://actortrain@10.0.0.2:4053"], config.GetStringList("akka.cluster.seed-nodes"));
    }
}
