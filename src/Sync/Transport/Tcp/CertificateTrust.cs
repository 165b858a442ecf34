using System.Security.Cryptography.X509Certificates;

namespace ActorTrain.Sync.Transport.Tcp;

/// <summary>
/// Decides whether a peer's certificate belongs to the cluster: it must chain to one of the
/// configured certificate authorities and be within its validity period (as must every
/// certificate in the chain). Nothing else is checked: not the host name (nodes are reached by
/// address and share one CA), not extended key usage, not revocation (no CRL or OCSP is
/// fetched). Whoever holds a certificate and key signed by the CA is a member.
/// </summary>
internal sealed class CertificateTrust
{
    private readonly X509Certificate2Collection authorities;
    private readonly X509Certificate2Collection intermediates;

    /// <param name="authorities">
    /// The root certificates peers' certificates must chain to; intermediate CA certificates may be
    /// listed beside them and are used to build the chain, but only self-signed ones are trusted.
    /// </param>
    public CertificateTrust(X509Certificate2Collection authorities)
    {
        ArgumentNullException.ThrowIfNull(authorities);
        this.authorities = [];
        intermediates = [];
        foreach (var certificate in authorities)
        {
            (certificate.SubjectName.RawData.AsSpan().SequenceEqual(certificate.IssuerName.RawData) ? this.authorities : intermediates).Add(certificate);
        }

        if (this.authorities.Count == 0)
        {
            throw new ArgumentException("At least one self-signed (root) CA certificate is needed.", nameof(authorities));
        }
    }

    /// <summary>Subjects of the trusted root certificates, for messages.</summary>
    public IReadOnlyList<string> AuthoritySubjects => authorities.Select(a => a.Subject).ToArray();

    /// <summary>Why <paramref name="presented"/> is not admitted, or null when it is.</summary>
    public string? Problem(X509Certificate? presented)
    {
        if (presented is null)
        {
            return "the peer presented no certificate";
        }

        using var owned = presented as X509Certificate2 is null ? X509CertificateLoader.LoadCertificate(presented.GetRawCertData()) : null;
        var certificate = owned ?? (X509Certificate2)presented;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
        chain.ChainPolicy.ExtraStore.AddRange(intermediates);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        if (chain.Build(certificate))
        {
            return null;
        }

        var reasons = chain.ChainStatus
            .Select(s => string.IsNullOrWhiteSpace(s.StatusInformation) ? s.Status.ToString() : $"{s.Status} ({s.StatusInformation.Trim()})")
            .Distinct();
        return $"certificate \"{certificate.Subject}\" issued by \"{certificate.Issuer}\" does not chain to the configured CA " +
            $"\"{string.Join("\", \"", AuthoritySubjects)}\": {string.Join("; ", reasons)}";
    }
}
