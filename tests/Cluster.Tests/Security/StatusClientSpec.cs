using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Security;
using ActorTrain.Cluster.Settings;
using ActorTrain.Tests.Shared;
using Akka.Actor;

namespace ActorTrain.Cluster.Tests.Security;

/// <summary>The `status` client against a seed (coordinator + receptionist, as ClusterBootstrap starts it) whose remoting runs TLS.</summary>
public class StatusClientSpec
{
    /// <summary>How long a client that must not get an answer waits for one.</summary>
    private static readonly TimeSpan Refusal = TimeSpan.FromSeconds(4);

    private static TlsSettings Tls(string certificate, string authorities) => new()
    {
        Enabled = true,
        CertificatePath = certificate,
        CertificatePassword = TestCertificates.Password,
        CaCertificatePath = authorities,
    };

    private static string SeedAddress(ActorSystem seed) =>
        // As `status --seed host:port` writes it; the client rewrites it to akka.ssl.tcp when its TLS is on.
        $"akka.tcp://{ClusterBootstrap.SystemName}@127.0.0.1:{Akka.Cluster.Cluster.Get(seed).SelfAddress.Port}";

    [Fact]
    public void The_contact_address_must_use_the_tls_scheme_only_with_tls()
    {
        Assert.Equal("akka.ssl.tcp://actortrain@h:1", StatusClient.ContactAddress("akka.tcp://actortrain@h:1", tls: true));
        Assert.Equal("akka.tcp://actortrain@h:1", StatusClient.ContactAddress("akka.tcp://actortrain@h:1", tls: false));
        Assert.Equal("akka.ssl.tcp://actortrain@h:1", StatusClient.ContactAddress("akka.ssl.tcp://actortrain@h:1", tls: true));
    }

    [Fact]
    public async Task A_status_client_with_a_certificate_of_the_cluster_ca_gets_the_status_of_a_tls_cluster()
    {
        await using var nodes = new TlsNodes();
        var seed = await nodes.StartSeedAsync(TlsNodes.TlsHocon(nodes.NodeCertificate("seed"), nodes.AuthorityFile));

        var status = await StatusClient.AskAsync(SeedAddress(seed), "127.0.0.1", Tls(nodes.NodeCertificate("status"), nodes.AuthorityFile), TestConfig.Timeout);

        Assert.False(string.IsNullOrEmpty(status.RequestId));
        Assert.False(string.IsNullOrEmpty(status.Phase));
        Assert.Equal(0, status.RegisteredNodes);
        Assert.Equal(0, NodeTls.Of(seed)!.RefusedRemotingPeers);
    }

    [Fact]
    public async Task A_status_client_without_tls_gets_no_answer_from_a_tls_cluster()
    {
        await using var nodes = new TlsNodes();
        var seed = await nodes.StartSeedAsync(TlsNodes.TlsHocon(nodes.NodeCertificate("seed"), nodes.AuthorityFile));

        await Assert.ThrowsAsync<AskTimeoutException>(() => StatusClient.AskAsync(SeedAddress(seed), "127.0.0.1", TlsSettings.Disabled, Refusal));

        Assert.True(TlsNodes.IsUp(seed));
    }

    [Fact]
    public async Task A_status_client_with_a_certificate_of_another_ca_gets_no_answer_and_is_counted()
    {
        await using var nodes = new TlsNodes();
        var seed = await nodes.StartSeedAsync(TlsNodes.TlsHocon(nodes.NodeCertificate("seed"), nodes.AuthorityFile));
        // It trusts the cluster's CA, so only the seed's check of its certificate can stop it.
        var tls = Tls(nodes.ForeignCertificate("status"), nodes.BothAuthoritiesFile);

        var e = await Assert.ThrowsAnyAsync<Exception>(() => StatusClient.AskAsync(SeedAddress(seed), "127.0.0.1", tls, Refusal));

        Assert.True(e is AskTimeoutException or StatusTlsException, $"unexpected {e.GetType().Name}: {e.Message}");
        Assert.True(NodeTls.Of(seed)!.RefusedRemotingPeers > 0, "the seed counts the refused certificate");
        Assert.True(TlsNodes.IsUp(seed));
    }

    [Fact]
    public async Task A_status_client_that_does_not_trust_the_seed_fails_with_a_tls_error()
    {
        await using var nodes = new TlsNodes();
        var seed = await nodes.StartSeedAsync(TlsNodes.TlsHocon(nodes.NodeCertificate("seed"), nodes.AuthorityFile));
        var tls = Tls(nodes.ForeignCertificate("status"), nodes.OtherAuthorityFile);

        var e = await Assert.ThrowsAnyAsync<Exception>(() => StatusClient.AskAsync(SeedAddress(seed), "127.0.0.1", tls, Refusal));

        Assert.True(e is StatusTlsException, $"{e.GetType().Name}: {e.Message}");
        Assert.True(TlsNodes.IsUp(seed));
    }

    [Fact]
    public async Task A_status_client_whose_certificate_file_is_missing_names_the_key_and_the_file()
    {
        await using var nodes = new TlsNodes();
        var missing = Path.Combine(nodes.Certificates.Directory, "absent.pfx");

        var e = await Assert.ThrowsAsync<SettingsException>(() => StatusClient.AskAsync("akka.tcp://actortrain@127.0.0.1:1", "127.0.0.1", Tls(missing, nodes.AuthorityFile), Refusal));

        Assert.Equal(TlsSettings.CertificatePathKey, e.Path);
        Assert.Contains(missing, e.Message);
    }
}
