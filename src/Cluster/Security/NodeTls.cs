using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ActorTrain.Cluster.Settings;
using ActorTrain.Sync.Transport.Tcp;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Akka.Remote.Transport.DotNetty;

namespace ActorTrain.Cluster.Security;

/// <summary>
/// A node's TLS material, loaded once from <see cref="TlsSettings"/>: its certificate and key and
/// the CA every peer must chain to. Akka remoting gets it as a <see cref="DotNettySslSetup"/>
/// (mutual authentication required, the peer's certificate judged by <see cref="Trust"/> instead
/// of the machine's CA store); the TCP data plane as <see cref="DataPlane"/>.
/// </summary>
/// <remarks>
/// What is checked, on both ends of every connection: the peer presents a certificate, proves it
/// holds the key, and the certificate chains to the configured CA and is within its validity
/// period. Not checked: host names, extended key usage, revocation. Any holder of a certificate
/// signed by the CA is a full member; there is no finer authorization.
/// </remarks>
internal sealed class NodeTls
{
    private static readonly ConditionalWeakTable<ActorSystem, NodeTls> BySystem = new();

    private long refusedRemotingPeers;

    private NodeTls(X509Certificate2 certificate, CertificateTrust trust)
    {
        Certificate = certificate;
        Trust = trust;
        DataPlane = new TcpTlsOptions(certificate, trust);
    }

    /// <summary>This node's certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>Which peer certificates are admitted.</summary>
    public CertificateTrust Trust { get; }

    /// <summary>The same certificate and trust for the TCP data plane's connections.</summary>
    public TcpTlsOptions DataPlane { get; }

    /// <summary>Remoting connections (either direction) whose peer certificate was refused; each is also logged as a warning.</summary>
    public long RefusedRemotingPeers => Interlocked.Read(ref refusedRemotingPeers);

    /// <summary>
    /// Reads the certificate files named by <paramref name="settings"/>. Every problem is a
    /// <see cref="SettingsException"/> naming the key and the file.
    /// </summary>
    public static NodeTls Load(TlsSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (!settings.Enabled) throw new ArgumentException($"TLS is off ({TlsSettings.EnabledKey}).", nameof(settings));
        var authorities = LoadAuthorities(settings.CaCertificatePath);
        var certificate = LoadCertificate(settings.CertificatePath, settings.CertificatePassword);
        var trust = new CertificateTrust(authorities);
        // A node whose own certificate its peers would refuse fails now, with the reason, not at every connection.
        if (trust.Problem(certificate) is { } problem)
            throw new SettingsException(TlsSettings.CertificatePathKey,
                $"{Path.GetFullPath(settings.CertificatePath)}: {problem} ({TlsSettings.CaCertificatePathKey} = {Path.GetFullPath(settings.CaCertificatePath)})");
        return new NodeTls(certificate, trust);
    }

    /// <summary>The TLS material <paramref name="system"/> was started with, or null when it runs without TLS.</summary>
    public static NodeTls? Of(ActorSystem system) => BySystem.TryGetValue(system, out var tls) ? tls : null;

    internal void Attach(ActorSystem system) => BySystem.AddOrUpdate(system, this);

    /// <summary>
    /// <paramref name="config"/> with Akka remoting's TLS switched on. Addresses of a TLS system use the
    /// protocol <c>akka.ssl.tcp</c>; seed nodes written as <c>akka.tcp://</c> (as <c>--seed-node</c>
    /// writes them) are rewritten to it.
    /// </summary>
    public static Config RemotingConfig(Config config)
    {
        var seeds = config.HasPath("akka.cluster.seed-nodes") ? config.GetStringList("akka.cluster.seed-nodes") : [];
        var rewritten = seeds.Select(TlsAddress);
        var lines = "akka.remote.dot-netty.tcp.enable-ssl = on\n" +
            $"akka.cluster.seed-nodes = [{string.Join(", ", rewritten.Select(Quote))}]";
        return ConfigurationFactory.ParseString(lines).WithFallback(config);
    }

    /// <summary>An <c>akka.tcp://</c> address in the scheme a TLS system speaks, <c>akka.ssl.tcp://</c>; other addresses unchanged.</summary>
    public static string TlsAddress(string address) =>
        address.StartsWith(PlainScheme, StringComparison.Ordinal) ? TlsScheme + address[PlainScheme.Length..] : address;

    private const string PlainScheme = "akka.tcp://";
    private const string TlsScheme = "akka.ssl.tcp://";

    /// <summary>
    /// Whether Akka.Remote shut <paramref name="system"/> down because its own TLS handshake with a
    /// peer failed (the peer refused this node's certificate, or this node the peer's). Akka's
    /// reason type is internal, so it is matched by name.
    /// </summary>
    public static bool ShutDownByFailedHandshake(ActorSystem system) =>
        CoordinatedShutdown.Get(system).ShutdownReason?.GetType().FullName == "Akka.Remote.Transport.DotNetty.TlsHandshakeFailureReason";

    /// <summary>Akka remoting's TLS: mutual authentication, no host-name check, peers judged by <see cref="Trust"/>.</summary>
    public DotNettySslSetup RemotingSetup() =>
        new(Certificate, suppressValidation: false, requireMutualAuthentication: true, validateCertificateHostname: false, customValidator: ValidateRemotingPeer);

    private bool ValidateRemotingPeer(X509Certificate2? certificate, X509Chain? chain, string peer, System.Net.Security.SslPolicyErrors errors, ILoggingAdapter log)
    {
        if (Trust.Problem(certificate) is not { } problem) return true;
        Interlocked.Increment(ref refusedRemotingPeers);
        log.Warning("TLS: refused the remoting connection with {0}: {1}", peer, problem);
        return false;
    }

    private static X509Certificate2Collection LoadAuthorities(string path)
    {
        const string key = TlsSettings.CaCertificatePathKey;
        var full = RequireFile(path, key);
        var authorities = new X509Certificate2Collection();
        try
        {
            var bytes = File.ReadAllBytes(full);
            if (System.Text.Encoding.ASCII.GetString(bytes).Contains("-----BEGIN CERTIFICATE-----", StringComparison.Ordinal))
                authorities.ImportFromPemFile(full);
            else
                authorities.Add(X509CertificateLoader.LoadCertificate(bytes));
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new SettingsException(key, $"{full}: cannot read a CA certificate (PEM or DER) from it ({e.Message})", e);
        }
        if (authorities.Count == 0) throw new SettingsException(key, $"{full}: holds no certificate");
        var roots = authorities.Where(c => c.SubjectName.RawData.AsSpan().SequenceEqual(c.IssuerName.RawData)).ToList();
        if (roots.Count == 0)
            throw new SettingsException(key, $"{full}: holds no self-signed CA certificate (found \"{authorities[0].Subject}\", issued by \"{authorities[0].Issuer}\"); give the root CA");
        if (roots.FirstOrDefault(r => r.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is { CertificateAuthority: false }) is { } leaf)
            throw new SettingsException(key, $"{full}: \"{leaf.Subject}\" is not a CA certificate (its basic constraints say so); give the CA that signed the node certificates");
        return authorities;
    }

    private static X509Certificate2 LoadCertificate(string path, string password)
    {
        const string key = TlsSettings.CertificatePathKey;
        var full = RequireFile(path, key);
        X509Certificate2 certificate;
        try
        {
            certificate = X509CertificateLoader.LoadPkcs12FromFile(full, password);
        }
        catch (CryptographicException e)
        {
            throw new SettingsException(TlsSettings.CertificatePasswordKey,
                $"cannot open {full} ({TlsSettings.CertificatePathKey}): wrong password, or not a PKCS#12 (.pfx/.p12) file ({e.Message})", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SettingsException(key, $"{full}: cannot read it ({e.Message})", e);
        }
        if (!certificate.HasPrivateKey)
        {
            certificate.Dispose();
            throw new SettingsException(key, $"{full}: holds no private key; TLS needs this node's certificate together with its key");
        }
        return certificate;
    }

    private static string RequireFile(string path, string key)
    {
        var full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new SettingsException(key, $"file not found: {full}");
        return full;
    }

    internal static string Quote(string value) =>
        "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
}
