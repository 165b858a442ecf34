using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ActorTrain.Tests.Shared;

/// <summary>
/// Certificates made at test time in a temporary folder: certificate authorities and node
/// certificates signed by them, written as PKCS#12 (node, with its key) and PEM (CA) files as an
/// operator would have them. ECDSA P-256 keys: quick to make. Dispose deletes the folder.
/// </summary>
internal sealed class TestCertificates : IDisposable
{
    public const string Password = "test-pass";

    private readonly List<IDisposable> owned = [];

    public TestCertificates()
    {
        Directory = Path.Combine(Path.GetTempPath(), "actortrain-tls-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(Directory);
    }

    public string Directory { get; }

    /// <summary>A self-signed CA certificate with its key.</summary>
    public X509Certificate2 Authority(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return Own(request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(2)));
    }

    /// <summary>A node certificate signed by <paramref name="authority"/>, with its key, as loaded back from a PKCS#12 file.</summary>
    public X509Certificate2 Node(X509Certificate2 authority, string name, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false)); // server and client authentication
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(authority, true, false));
        var serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7f;
        using var signed = request.Create(authority, DateTimeOffset.UtcNow.AddMinutes(-5), notAfter ?? DateTimeOffset.UtcNow.AddDays(1), serial);
        using var withKey = signed.CopyWithPrivateKey(key);
        return Own(X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12, Password), Password));
    }

    /// <summary>Writes <paramref name="certificate"/> and its key as a password-protected PKCS#12 file; returns its path.</summary>
    public string WritePfx(X509Certificate2 certificate, string fileName, string password = Password)
    {
        var path = Path.Combine(Directory, fileName);
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pkcs12, password));
        return path;
    }

    /// <summary>Writes the public certificates (no keys) as one PEM file; returns its path.</summary>
    public string WritePem(string fileName, params X509Certificate2[] certificates)
    {
        var path = Path.Combine(Directory, fileName);
        File.WriteAllText(path, string.Concat(certificates.Select(c => c.ExportCertificatePem() + "\n")));
        return path;
    }

    public void Dispose()
    {
        foreach (var item in owned)
        {
            item.Dispose();
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A file still open elsewhere: the temp folder is cleaned by the OS later.
        }
    }

    private X509Certificate2 Own(X509Certificate2 certificate)
    {
        owned.Add(certificate);
        return certificate;
    }
}
