using System.Security.Cryptography.X509Certificates;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Settings;
using ActorTrain.Tests.Shared;
using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;

namespace ActorTrain.Cluster.Tests.Security;

/// <summary>Cluster members started as the host starts them (ClusterBootstrap), with or without TLS, on 127.0.0.1 and free ports.</summary>
internal sealed class TlsNodes : IAsyncDisposable
{
    private readonly List<ActorSystem> systems = [];
    private X509Certificate2? otherAuthority;

    public TlsNodes()
    {
        Authority = Certificates.Authority("ActorTrain cluster CA");
        AuthorityFile = Certificates.WritePem("ca.pem", Authority);
    }

    public TestCertificates Certificates { get; } = new();

    public X509Certificate2 Authority { get; }

    public string AuthorityFile { get; }

    /// <summary>The HOCON that hocon/tls.conf holds, pointing at this node's files.</summary>
    public static string TlsHocon(string certificate, string authorities, string password = TestCertificates.Password) => $$"""
        actortrain.tls {
          enabled = on
          certificate-path = "{{certificate}}"
          certificate-password = "{{password}}"
          ca-certificate-path = "{{authorities}}"
        }
        """;

    /// <summary>A node certificate of the cluster's CA, as a PKCS#12 file.</summary>
    public string NodeCertificate(string name) => Certificates.WritePfx(Certificates.Node(Authority, name), name + ".pfx");

    /// <summary>A CA that is not the cluster's, made on first use.</summary>
    public X509Certificate2 OtherAuthority => otherAuthority ??= Certificates.Authority("Another CA");

    /// <summary>A PEM file with only <see cref="OtherAuthority"/>.</summary>
    public string OtherAuthorityFile => Certificates.WritePem("other.pem", OtherAuthority);

    /// <summary>A PEM file with the cluster's CA and <see cref="OtherAuthority"/>: whoever uses it trusts both.</summary>
    public string BothAuthoritiesFile => Certificates.WritePem("both.pem", Authority, OtherAuthority);

    /// <summary>A node certificate of <see cref="OtherAuthority"/>, as a PKCS#12 file.</summary>
    public string ForeignCertificate(string name) => Certificates.WritePfx(Certificates.Node(OtherAuthority, name), name + ".pfx");

    /// <summary>A seed member that has joined itself and is Up.</summary>
    public async Task<ActorSystem> StartSeedAsync(string hocon)
    {
        var system = Start(TestConfig.Seed(hocon));
        var cluster = Akka.Cluster.Cluster.Get(system);
        cluster.Join(cluster.SelfAddress);
        await WaitUntilAsync(() => IsUp(system), TestConfig.Timeout, "the seed is Up");
        return system;
    }

    /// <summary>A trainer-role member that tries to join through <paramref name="seed"/>'s port, written as --seed-node writes it (akka.tcp://).</summary>
    public ActorSystem StartJoiner(ActorSystem seed, string hocon)
    {
        var port = Akka.Cluster.Cluster.Get(seed).SelfAddress.Port;
        return Start(TestConfig.Seed($"""
            akka.cluster.roles = [trainer]
            akka.cluster.seed-nodes = ["akka.tcp://{ClusterBootstrap.SystemName}@127.0.0.1:{port}"]
            akka.cluster.seed-node-timeout = 1s
            akka.cluster.retry-unsuccessful-join-after = 1s
            {hocon}
            """));
    }

    public ActorSystem Start(Config config)
    {
        var (system, _) = ClusterBootstrap.Start(config, ActorTrainSettings.Create(config));
        systems.Add(system);
        return system;
    }

    public static bool IsUp(ActorSystem system) => Akka.Cluster.Cluster.Get(system).SelfMember.Status == MemberStatus.Up;

    /// <summary>Whether <paramref name="seed"/> sees a member other than itself.</summary>
    public static bool HasOtherMembers(ActorSystem seed) => Akka.Cluster.Cluster.Get(seed).State.Members.Count > 1;

    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan limit, string what)
    {
        var deadline = DateTime.UtcNow + limit;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"Timed out after {limit.TotalSeconds:0} s waiting until {what}.");
            await Task.Delay(50);
        }
    }

    /// <summary>Asserts that <paramref name="condition"/> stays false for all of <paramref name="period"/>.</summary>
    public static async Task NeverAsync(Func<bool> condition, TimeSpan period, string what)
    {
        var deadline = DateTime.UtcNow + period;
        while (DateTime.UtcNow < deadline)
        {
            Assert.False(condition(), $"{what} happened, but must not.");
            await Task.Delay(100);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Task.WhenAll(systems.Select(s => s.Terminate().WaitAsync(TestConfig.Timeout)));
        Certificates.Dispose();
    }
}
