using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using ActorTrain.Sync.Transport.Tcp;
using ActorTrain.Tests.Shared;

namespace ActorTrain.Sync.Tests.Transport.Tcp;

public sealed class TcpRingTransportTlsTests : IDisposable
{
    private readonly TestCertificates certificates = new();
    private readonly X509Certificate2 authority;
    private readonly X509Certificate2 stranger;

    public TcpRingTransportTlsTests()
    {
        authority = certificates.Authority("ActorTrain test CA");
        stranger = certificates.Authority("Another CA");
    }

    public void Dispose() => certificates.Dispose();

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public async Task A_ring_over_tls_with_certificates_of_one_ca_sums_across_peers(int n)
    {
        await using var ring = await TcpTestRing.ConnectAsync(n, 4096, p => Options(authority, $"node{p}"));
        var buffers = Enumerable.Range(0, n).Select(p => TestData.RandomFloats(50_001, seed: p)).ToArray();
        var expected = TestData.ReferenceSum(buffers, 50_001);

        await TcpRingTransportTests.RunRing(ring.Peers, buffers, step: 1);

        TestData.AssertCloseToReference(expected, buffers[0], n);
        Assert.All(buffers, b => Assert.Equal(buffers[0], b));
        Assert.All(ring.Peers, p => Assert.True(p.UsesTls));
        Assert.All(ring.Peers, p => Assert.Equal(0, p.RejectedConnections));
        Assert.All(ring.Peers, p => Assert.Equal(0, p.DroppedFrames));
    }

    [Fact]
    public async Task A_peer_with_a_certificate_of_another_ca_cannot_join_the_ring_and_is_told_why()
    {
        var listeners = new[] { TcpRingTransport.Listen(IPAddress.Loopback, 0), TcpRingTransport.Listen(IPAddress.Loopback, 0) };
        var peers = listeners.Select(l => (IPEndPoint)l.LocalEndpoint).ToArray();
        using var cts = new CancellationTokenSource(TestData.Timeout);
        var member = TcpRingTransport.ConnectAsync(0, peers, listeners[0], TcpTestRing.Generation, TcpTestRing.Token, 1024, cts.Token,
            Options(authority, "node0"));
        var intruder = TcpRingTransport.ConnectAsync(1, peers, listeners[1], TcpTestRing.Generation, TcpTestRing.Token, 1024, cts.Token,
            Options(stranger, "node1", trusting: stranger));

        // The member refuses the intruder's server certificate when it connects to it.
        var refused = await Assert.ThrowsAsync<AuthenticationException>(() => member.WaitAsync(TestData.Timeout));
        Assert.Contains("does not chain to the configured CA", refused.Message);
        Assert.Contains("CN=node1", refused.Message);
        await Assert.ThrowsAnyAsync<Exception>(() => intruder.WaitAsync(TestData.Timeout));
    }

    [Theory]
    [InlineData(false, "presented no certificate")]
    [InlineData(true, "does not chain to the configured CA")]
    public async Task A_client_without_a_certificate_or_with_one_of_another_ca_is_refused_and_counted_while_the_ring_still_works(
        bool foreignCertificate, string reason)
    {
        await using var ring = await TcpTestRing.ConnectAsync(2, 1024, p => Options(authority, $"node{p}"));
        var target = ring.Peers[1];

        Assert.NotNull(await TlsHandshakeFailureAsync(target.ListenEndPoint, foreignCertificate ? certificates.Node(stranger, "intruder") : null));

        await TcpTestRing.EventuallyAsync(() => target.RejectedConnections == 1, "the refused client is counted");
        Assert.Contains(reason, target.LastRejection);
        await TcpRingTransportTests.AssertRingWorks(ring, step: 2);
    }

    [Fact]
    public async Task A_plaintext_handshake_or_garbage_on_a_tls_listener_is_refused_and_counted()
    {
        await using var ring = await TcpTestRing.ConnectAsync(2, 1024, p => Options(authority, $"node{p}"));
        var target = ring.Peers[1];

        // A correct plaintext hello with the right token: without TLS it is not even read.
        await Assert.ThrowsAnyAsync<IOException>(
            () => TcpTestRing.HandshakeAsync(target.ListenEndPoint, TcpTestRing.Generation, claimedPeer: 0, TcpTestRing.Token).WaitAsync(TestData.Timeout));
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await socket.ConnectAsync(target.ListenEndPoint);
            var garbage = new byte[4096];
            new Random(5).NextBytes(garbage);
            await socket.SendAsync(garbage, SocketFlags.None);
            await TcpTestRing.AssertClosedByPeerAsync(socket);
        }

        await TcpTestRing.EventuallyAsync(() => target.RejectedConnections == 2, "both connections are counted");
        Assert.Contains("TLS handshake failed", target.LastRejection);
        await TcpRingTransportTests.AssertRingWorks(ring, step: 2);
    }

    [Fact]
    public void Trust_refuses_an_expired_certificate_and_options_refuse_a_certificate_without_its_key()
    {
        var trust = new CertificateTrust([authority]);
        var expired = certificates.Node(authority, "old", notAfter: DateTimeOffset.UtcNow.AddMinutes(-1));
        using var publicOnly = X509CertificateLoader.LoadCertificate(certificates.Node(authority, "node").RawData);

        Assert.Null(trust.Problem(certificates.Node(authority, "fresh")));
        Assert.Contains("NotTimeValid", trust.Problem(expired));
        Assert.Contains("no private key", Assert.Throws<ArgumentException>(() => new TcpTlsOptions(publicOnly, trust)).Message);
        Assert.Throws<ArgumentException>(() => new CertificateTrust([certificates.Node(authority, "not-a-root")]));
    }

    private TcpTlsOptions Options(X509Certificate2 issuer, string name, X509Certificate2? trusting = null) =>
        new(certificates.Node(issuer, name), new CertificateTrust([trusting ?? authority]));

    /// <summary>
    /// A TLS client that accepts any server and presents <paramref name="clientCertificate"/> (or none),
    /// then sends a valid hello. Returns how the connection failed; null when the listener answered.
    /// </summary>
    private static async Task<Exception?> TlsHandshakeFailureAsync(IPEndPoint target, X509Certificate2? clientCertificate)
    {
        using var cts = new CancellationTokenSource(TestData.Timeout);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(target, cts.Token);
        await using var stream = new SslStream(new NetworkStream(socket, ownsSocket: false));
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        };
        if (clientCertificate is not null)
        {
            options.ClientCertificateContext = SslStreamCertificateContext.Create(clientCertificate, null, offline: true);
        }

        try
        {
            await stream.AuthenticateAsClientAsync(options, cts.Token);
            await stream.WriteAsync(TcpWireFormat.HelloOf(TcpTestRing.Generation, 0, TcpTestRing.Token), cts.Token);
            var answer = new byte[TcpWireFormat.AnswerSize];
            await stream.ReadExactlyAsync(answer, cts.Token);
            return null;
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            return e;
        }
    }
}
