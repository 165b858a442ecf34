using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using ActorTrain.Tests.Shared;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// TLS between real node processes (README, "Security"): nodes whose certificates share the
/// cluster's CA train together over TLS remoting and the TLS data plane; a node without TLS, or
/// with a certificate of another CA, never registers. Certificates are made by the test.
/// </summary>
[Collection(ProcessCollection.Name)]
public class TlsClusterTests
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(4);

    [Fact]
    public async Task A_seed_and_a_worker_with_certificates_of_one_CA_train_over_TLS_and_end_with_equal_replicas()
    {
        using var certs = new TestCertificates();
        var (ca, caPem, seedCertificate, probeCertificate) = ClusterCa(certs);
        var workerCertificate = certs.Node(ca, "worker-tls");

        var port = NodeProcess.FreePort();
        var dataPort = OtherFreePort(port);
        var seedAddress = $"127.0.0.1:{port}";
        var outDir = Repo.TempDir();
        // A fixed data-plane port on the seed, so that the test can look at what it serves.
        var seedConfig = NodeConfig(certs, "seed", certs.WritePfx(seedCertificate, "seed.pfx"), caPem, $"actortrain.sync.tcp-port = {dataPort}");
        var workerConfig = NodeConfig(certs, "worker", certs.WritePfx(workerCertificate, "worker.pfx"), caPem);

        using var seed = NodeProcess.Start("seed", "seed", "--config", seedConfig, "--port", port.ToString(), "--seed-node", seedAddress,
            "--min-nodes", "2", "--epochs", "1", "--out", outDir, "--intra-op-threads", "1", "--node-name", "seed-tls", "--no-progress");
        using var worker = NodeProcess.Start("worker", "worker", "--config", workerConfig, "--seed-node", seedAddress,
            "--node-name", "worker-tls", "--out", outDir, "--intra-op-threads", "1", "--no-progress");

        // The world formed with the TCP data plane; while it trains, the seed's data-plane port
        // answers only in TLS, with the seed's certificate.
        await seed.WaitForLineAsync("gradients over tcp", TimeSpan.FromSeconds(150));
        var dataPlaneCertificate = await ServerCertificateAsync(dataPort, probeCertificate);
        Assert.Equal(seedCertificate.Thumbprint, dataPlaneCertificate.Thumbprint);

        var codes = await Task.WhenAll(seed.WaitForExitAsync(RunTimeout), worker.WaitForExitAsync(RunTimeout));
        Assert.True(codes.All(c => c == 0), $"exit codes {string.Join(",", codes)}\nseed:\n{seed.Tail()}\nworker:\n{worker.Tail()}");

        // Both ends of remoting ran TLS: their addresses use akka.ssl.tcp.
        Assert.Contains($"seed node akka.ssl.tcp://actortrain@127.0.0.1:{port} ", seed.Output);
        Assert.Contains("worker node akka.ssl.tcp://actortrain@127.0.0.1:", worker.Output);
        Assert.Contains("Node worker-tls registered", seed.Output);
        Assert.DoesNotContain("TLS: refused", seed.Output + worker.Output);

        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run-report.json")));
        var r = report.RootElement;
        Assert.Equal(2, r.GetProperty("world_size").GetInt32());
        Assert.Equal(["seed-tls", "worker-tls"], r.GetProperty("nodes").EnumerateArray().Select(n => n.GetProperty("name").GetString()).Order());
        var checksums = r.GetProperty("replica_checksums").EnumerateObject().Select(p => p.Value.GetString()).ToList();
        Assert.Equal(2, checksums.Count);
        Assert.Single(checksums.Distinct());
        Assert.True(r.GetProperty("replicas_equal").GetBoolean());
        Assert.True(r.GetProperty("timings_ms").GetProperty("cross_node").GetDouble() > 0, "two nodes must sync across nodes");
    }

    [Fact]
    public async Task Nodes_without_TLS_or_with_a_certificate_of_another_CA_never_join_a_TLS_cluster()
    {
        using var certs = new TestCertificates();
        var (ca, caPem, seedCertificate, probeCertificate) = ClusterCa(certs);
        var otherCa = certs.Authority("Some other CA");
        var foreignCertificate = certs.Node(otherCa, "stranger-foreign");

        var port = NodeProcess.FreePort();
        var seedAddress = $"127.0.0.1:{port}";
        // Long enough to outlast both strangers' attempts, short enough that the seed ends by itself.
        var seedConfig = NodeConfig(certs, "seed", certs.WritePfx(seedCertificate, "seed.pfx"), caPem, "actortrain.startup-timeout = 30s");
        using var seed = NodeProcess.Start("seed", "seed", "--config", seedConfig, "--port", port.ToString(), "--seed-node", seedAddress,
            "--min-nodes", "2", "--out", Repo.TempDir(), "--intra-op-threads", "1", "--node-name", "seed-tls", "--no-progress");
        await seed.WaitForLineAsync("Node seed-tls registered", TimeSpan.FromSeconds(90));

        // The remoting port answers only in TLS, with the seed's certificate.
        var remotingCertificate = await ServerCertificateAsync(port, probeCertificate);
        Assert.Equal(seedCertificate.Thumbprint, remotingCertificate.Thumbprint);

        // (a) No TLS at all. (b) TLS with a certificate of another CA; it trusts the cluster's CA
        // as well as its own, so that only the seed's check can keep it out.
        var plainConfig = Path.Combine(certs.Directory, "plain.conf");
        File.WriteAllText(plainConfig, "actortrain.startup-timeout = 8s\n");
        var foreignConfig = NodeConfig(certs, "foreign", certs.WritePfx(foreignCertificate, "foreign.pfx"),
            certs.WritePem("both-cas.crt", ca, otherCa), "actortrain.startup-timeout = 8s");
        using var plain = NodeProcess.Start("stranger-plain", "worker", "--config", plainConfig, "--seed-node", seedAddress,
            "--node-name", "stranger-plain", "--intra-op-threads", "1", "--no-progress");
        using var foreign = NodeProcess.Start("stranger-foreign", "worker", "--config", foreignConfig, "--seed-node", seedAddress,
            "--node-name", "stranger-foreign", "--intra-op-threads", "1", "--no-progress");

        var codes = await Task.WhenAll(plain.WaitForExitAsync(TimeSpan.FromSeconds(90)), foreign.WaitForExitAsync(TimeSpan.FromSeconds(90)));
        Assert.True(!seed.HasExited, $"the seed must still be waiting while the strangers try\n{seed.Tail()}");
        foreach (var (stranger, code) in new[] { plain, foreign }.Zip(codes))
        {
            Assert.True(code == 2, $"{stranger.Name}: exit code {code}\n{stranger.Tail()}");
            Assert.DoesNotContain("Registered with the coordinator", stranger.Output);
        }
        // The node without TLS waits for an answer that never comes. The one with the foreign
        // certificate does too, unless the seed's refusal reaches it while its own TLS handshake is
        // still in progress: then Akka.Remote shuts it down at once, and it says why.
        Assert.True(plain.Output.Contains("no coordinator answered", StringComparison.Ordinal), plain.Tail());
        Assert.True(foreign.Output.Contains("no coordinator answered", StringComparison.Ordinal)
            || foreign.Output.Contains("a TLS handshake with a peer failed", StringComparison.Ordinal), foreign.Tail());
        // The seed turned away the plain connection (Akka.Remote's log) and the foreign certificate
        // (NodeTls's, naming its issuer).
        Assert.Contains("not an SSL/TLS record", seed.Output);
        Assert.Contains("TLS: refused the remoting connection", seed.Output);
        Assert.Contains("issued by \"CN=Some other CA\"", seed.Output);

        // Nobody else ever registered: the seed gives up waiting for its second node.
        Assert.Equal(2, await seed.WaitForExitAsync(TimeSpan.FromSeconds(90)));
        Assert.Contains("only 1 of 2 node(s) registered", seed.Output);
        var registrations = seed.Output.Split('\n').Where(l => l.Contains("registered", StringComparison.Ordinal) && !l.Contains("only 1 of 2", StringComparison.Ordinal)).ToList();
        Assert.True(registrations.Count == 1 && registrations[0].Contains("Node seed-tls registered", StringComparison.Ordinal),
            $"registrations on the seed:\n{string.Join('\n', registrations)}");
        Assert.DoesNotContain("stranger", seed.Output.Replace("\"CN=stranger-foreign\"", "", StringComparison.Ordinal));
    }

    /// <summary>The cluster's CA (and its PEM file), the seed's certificate and one for the test's own TLS probes.</summary>
    private static (X509Certificate2 Ca, string CaPem, X509Certificate2 Seed, X509Certificate2 Probe) ClusterCa(TestCertificates certs)
    {
        var ca = certs.Authority("ActorTrain test CA");
        return (ca, certs.WritePem("ca.crt", ca), certs.Node(ca, "seed-tls"), certs.Node(ca, "probe"));
    }

    /// <summary>A node config with TLS on (the keys of hocon/tls.conf) and the given extra lines.</summary>
    private static string NodeConfig(TestCertificates certs, string name, string pfx, string caPem, params string[] extra)
    {
        var path = Path.Combine(certs.Directory, name + ".conf");
        File.WriteAllText(path, $$"""
            actortrain.tls {
              enabled = on
              certificate-path = "{{pfx}}"
              certificate-password = "{{TestCertificates.Password}}"
              ca-certificate-path = "{{caPem}}"
            }
            {{string.Join('\n', extra)}}
            """);
        return path;
    }

    /// <summary>
    /// Connects to 127.0.0.1:<paramref name="port"/> as a TLS client presenting <paramref name="client"/>
    /// and returns the certificate the server presented; fails if the port does not speak TLS.
    /// </summary>
    private static async Task<X509Certificate2> ServerCertificateAsync(int port, X509Certificate2 client)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", port, timeout.Token);
        await using var tls = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
        X509Certificate2? presented = null;
        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            ClientCertificates = [client],
            RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            {
                if (certificate is not null) presented = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
                return true;
            },
        }, timeout.Token);
        Assert.True(tls.IsAuthenticated);
        return presented ?? throw new InvalidOperationException($"127.0.0.1:{port} presented no certificate");
    }

    private static int OtherFreePort(int taken)
    {
        while (true)
        {
            var port = NodeProcess.FreePort();
            if (port != taken) return port;
        }
    }
}
