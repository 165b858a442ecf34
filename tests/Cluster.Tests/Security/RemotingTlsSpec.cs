using ActorTrain.Cluster.Security;
using ActorTrain.Cluster.Settings;

namespace ActorTrain.Cluster.Tests.Security;

/// <summary>Two real ActorSystems on loopback: who may join a cluster whose remoting runs TLS with mutual authentication.</summary>
public class RemotingTlsSpec
{
    /// <summary>How long a node that must not get in is watched; many join retries fit in it.</summary>
    private static readonly TimeSpan Refusal = TimeSpan.FromSeconds(6);

    [Fact]
    public async Task A_node_with_a_certificate_of_the_cluster_ca_joins_over_tls()
    {
        await using var nodes = new TlsNodes();
        var seed = await nodes.StartSeedAsync(TlsNodes.TlsHocon(nodes.NodeCertificate("seed"), nodes.AuthorityFile));

        var joiner = nodes.StartJoiner(seed, TlsNodes.TlsHocon(nodes.NodeCertificate("worker"), nodes.AuthorityFile));

        await TlsNodes.WaitUntilAsync(() => TlsNodes.IsUp(joiner), TestConfig.Timeout, "the worker is Up");
        Assert.Equal("akka.ssl.tcp", Akka.Cluster.Cluster.Get(joiner).SelfAddress.Protocol);
        Assert.Equal(0, NodeTls.Of(seed)!.RefusedRemotingPeers);
        Assert.Equal(0, NodeTls.Of(joiner)!.RefusedRemotingPeers);
    }

    [Fact]
    public async Task A_node_without_tls_cannot_join_a_tls_cluster()
    {
        await using var nodes = new TlsNodes();
        var seed = await nodes.StartSeedAsync(TlsNodes.TlsHocon(nodes.NodeCertificate("seed"), nodes.AuthorityFile));

        var plain = nodes.StartJoiner(seed, "");

        Assert.Null(NodeTls.Of(plain));
        await TlsNodes.NeverAsync(() => TlsNodes.IsUp(plain) || TlsNodes.HasOtherMembers(seed), Refusal, "the plaintext node joined");
    }

    [Fact]
    public async Task A_node_with_a_certificate_of_another_ca_cannot_join_and_is_refused_and_counted()
    {
        await using var nodes = new TlsNodes();
        var seed = await nodes.StartSeedAsync(TlsNodes.TlsHocon(nodes.NodeCertificate("seed"), nodes.AuthorityFile));
        // The intruder trusts the cluster's CA (so it would accept the seed), but its own certificate is from another CA.
        var intruder = nodes.StartJoiner(seed, TlsNodes.TlsHocon(nodes.ForeignCertificate("intruder"), nodes.BothAuthoritiesFile));

        await TlsNodes.NeverAsync(() => TlsNodes.IsUp(intruder) || TlsNodes.HasOtherMembers(seed), Refusal, "the intruder joined");
        // The count follows the first refused handshake, which a loaded machine (CI builds beside these tests) can delay past the period above.
        await TlsNodes.WaitUntilAsync(() => NodeTls.Of(seed)!.RefusedRemotingPeers > 0, TestConfig.Timeout, "the seed counts the refused certificate");
    }

    [Fact]
    public async Task A_tls_node_cannot_join_a_cluster_whose_certificate_it_does_not_trust()
    {
        await using var nodes = new TlsNodes();
        // The seed trusts the worker's CA too, so the refusal is the worker's alone: where both sides refuse, the seed may
        // abort the handshake before the worker has judged the seed's certificate, and the worker would count nothing.
        var seed = await nodes.StartSeedAsync(TlsNodes.TlsHocon(nodes.ForeignCertificate("foreign-seed"), nodes.BothAuthoritiesFile));

        var joiner = nodes.StartJoiner(seed, TlsNodes.TlsHocon(nodes.NodeCertificate("worker"), nodes.AuthorityFile));

        await TlsNodes.NeverAsync(() => TlsNodes.IsUp(joiner) || TlsNodes.HasOtherMembers(seed), Refusal, "the worker joined a foreign cluster");
        await TlsNodes.WaitUntilAsync(() => NodeTls.Of(joiner)!.RefusedRemotingPeers > 0, TestConfig.Timeout, "the worker counts the seed's refused certificate");
    }

    [Fact]
    public void Akka_tls_without_actortrain_tls_is_refused_with_the_keys_to_use()
    {
        var e = Assert.Throws<SettingsException>(() => ActorTrainSettings.Create(TestConfig.Seed("akka.remote.dot-netty.tcp.enable-ssl = on")));

        Assert.Equal("akka.remote.dot-netty.tcp.enable-ssl", e.Path);
        Assert.Contains(TlsSettings.EnabledKey, e.Message);
        Assert.Contains("tls.conf", e.Message);
    }
}
