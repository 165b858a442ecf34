using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using ActorTrain.Cluster.Security;
using ActorTrain.Cluster.Settings;
using ActorTrain.Tests.Shared;

namespace ActorTrain.Cluster.Tests.Metrics;

/// <summary>
/// A node's TLS material (as NodeTls loads it from files) and scrapers of its HTTPS metrics
/// endpoint: one with a certificate of the cluster's CA, one with none, one with another CA's.
/// </summary>
internal sealed class TlsScrapers : IDisposable
{
    private readonly TestCertificates certificates = new();

    public TlsScrapers()
    {
        var authority = certificates.Authority("ActorTrain cluster CA");
        var authorityFile = certificates.WritePem("ca.pem", authority);
        Node = NodeTls.Load(new TlsSettings
        {
            Enabled = true,
            CertificatePath = certificates.WritePfx(certificates.Node(authority, "node-0"), "node-0.pfx"),
            CertificatePassword = TestCertificates.Password,
            CaCertificatePath = authorityFile,
        });
        Scraper = certificates.Node(authority, "prometheus");
        Stranger = certificates.Node(certificates.Authority("Another CA"), "prometheus");
    }

    /// <summary>The node's certificate and trust, as the endpoint gets them from NodeTls.Of(system).</summary>
    public NodeTls Node { get; }

    /// <summary>A client certificate signed by the cluster's CA.</summary>
    public X509Certificate2 Scraper { get; }

    /// <summary>A client certificate signed by another CA.</summary>
    public X509Certificate2 Stranger { get; }

    /// <summary>An HTTPS client presenting <paramref name="certificate"/> (none if null) that trusts only the cluster's CA.</summary>
    public HttpClient Client(X509Certificate2? certificate)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = ClientOptions(certificate),
            ConnectTimeout = TestConfig.Timeout,
        };
        return new HttpClient(handler) { Timeout = TestConfig.Timeout };
    }

    /// <summary>
    /// Sends <paramref name="request"/> over TLS with the scraper's certificate and returns what the
    /// server answers before it closes (bounded by the test timeout).
    /// </summary>
    public async Task<string> RawAsync(int port, byte[] request)
    {
        using var cts = new CancellationTokenSource(TestConfig.Timeout);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), cts.Token);
        await using var tls = new SslStream(new NetworkStream(socket, ownsSocket: false));
        await tls.AuthenticateAsClientAsync(ClientOptions(Scraper), cts.Token);
        await tls.WriteAsync(request, cts.Token);
        using var response = new MemoryStream();
        await tls.CopyToAsync(response, cts.Token);
        return Encoding.ASCII.GetString(response.ToArray());
    }

    public void Dispose() => certificates.Dispose();

    private SslClientAuthenticationOptions ClientOptions(X509Certificate2? certificate) => new()
    {
        TargetHost = "localhost",
        ClientCertificates = certificate is null ? null : new X509CertificateCollection { certificate },
        // A scraper must refuse a server whose certificate is not the cluster CA's, as Prometheus' ca_file does.
        RemoteCertificateValidationCallback = (_, server, _, _) => Node.Trust.Problem(server) is null,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
    };
}
