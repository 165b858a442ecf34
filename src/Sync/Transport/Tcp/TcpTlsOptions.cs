using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>
/// TLS with mutual authentication for the data plane: every ring connection runs inside TLS, the
/// accepting peer requires a client certificate, and both ends admit the other only when its
/// certificate passes <see cref="Trust"/>. The data-plane handshake (generation, ring position,
/// token) then runs inside the encrypted connection as without TLS.
/// </summary>
internal sealed class TcpTlsOptions
{
    // Stands in for the peer's host name; certificates are not matched against names (see CertificateTrust).
    private const string TargetHost = "actortrain-data-plane";

    private readonly SslStreamCertificateContext context;

    /// <param name="certificate">This node's certificate, with its private key.</param>
    /// <param name="trust">Which peer certificates are admitted.</param>
    public TcpTlsOptions(X509Certificate2 certificate, CertificateTrust trust)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        ArgumentNullException.ThrowIfNull(trust);
        if (!certificate.HasPrivateKey)
        {
            throw new ArgumentException($"The certificate \"{certificate.Subject}\" has no private key; TLS needs one.", nameof(certificate));
        }

        Certificate = certificate;
        Trust = trust;
        // Offline: the chain is built from what is at hand, never fetched from the network.
        context = SslStreamCertificateContext.Create(certificate, additionalCertificates: null, offline: true);
    }

    /// <summary>This node's certificate.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>Which peer certificates are admitted.</summary>
    public CertificateTrust Trust { get; }

    /// <summary>The accepting side: a client certificate is required; <paramref name="refused"/> hears why one was not admitted.</summary>
    internal SslServerAuthenticationOptions ServerOptions(Action<string> refused) => new()
    {
        ServerCertificateContext = context,
        ClientCertificateRequired = true,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = (_, certificate, _, _) => Admit(certificate, refused),
    };

    /// <summary>The connecting side: presents this node's certificate; <paramref name="refused"/> hears why the server's was not admitted.</summary>
    internal SslClientAuthenticationOptions ClientOptions(Action<string> refused) => new()
    {
        TargetHost = TargetHost,
        ClientCertificateContext = context,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = (_, certificate, _, _) => Admit(certificate, refused),
    };

    private bool Admit(X509Certificate? certificate, Action<string> refused)
    {
        if (Trust.Problem(certificate) is not { } problem)
        {
            return true;
        }

        refused(problem);
        return false;
    }
}
