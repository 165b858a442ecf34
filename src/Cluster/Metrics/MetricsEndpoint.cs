using System.Net;
using System.Net.Sockets;
using ActorTrain.Cluster.Security;
using ActorTrain.Cluster.Settings;
using Prometheus;

namespace ActorTrain.Cluster.Metrics;

/// <summary>
/// Serves one <see cref="NodeMetrics"/> registry in Prometheus' text format at
/// <c>http://{hostname}:{port}/metrics</c> (prometheus-net's HttpListener-based server), or, when
/// the node runs TLS (<c>actortrain.tls</c>), at <c>https://{hostname}:{port}/metrics</c> with
/// mutual authentication (<see cref="TlsMetricsServer"/>): the scraper must present a certificate
/// signed by the cluster's CA. The default hostname is loopback: only processes on this machine
/// can scrape it. Exposing it to the network (a routable address, or <c>0.0.0.0</c> / <c>+</c> for
/// all interfaces) is the operator's choice; without TLS the endpoint has no authentication.
/// Malformed requests are answered and closed (by HttpListener itself without TLS).
/// </summary>
internal sealed class MetricsEndpoint : IDisposable
{
    public const string HostnameKey = "actortrain.metrics.hostname";
    public const string PortKey = "actortrain.metrics.port";
    public const string EnabledKey = "actortrain.metrics.enabled";

    /// <summary>With port 0, how often a free port is picked again when another process took it between the probe and the bind.</summary>
    private const int FreePortAttempts = 5;

    private readonly Action _stop;
    private int _disposed;

    private MetricsEndpoint(Action stop, Uri url, int port, TlsMetricsServer? tls)
    {
        _stop = stop;
        Url = url;
        Port = port;
        Tls = tls;
    }

    /// <summary>Where Prometheus scrapes this node, e.g. <c>http://127.0.0.1:9464/metrics</c> (<c>https://</c> with TLS).</summary>
    public Uri Url { get; }

    /// <summary>The port bound; the one picked when 0 was asked for.</summary>
    public int Port { get; }

    /// <summary>The HTTPS server when TLS is on (its counters are for tests), else null.</summary>
    internal TlsMetricsServer? Tls { get; }

    /// <summary>
    /// Starts serving <paramref name="metrics"/>. <paramref name="port"/> 0 picks a free port.
    /// A hostname that does not resolve, or an address:port that cannot be bound, throws a
    /// <see cref="SettingsException"/> naming the address and the keys to change. With
    /// <paramref name="tls"/> (the node's, <see cref="NodeTls.Of"/>) it serves HTTPS and requires a
    /// client certificate signed by the cluster's CA; without, plain HTTP.
    /// </summary>
    public static MetricsEndpoint Start(NodeMetrics metrics, string hostname, int port, NodeTls? tls = null) =>
        Start(metrics, hostname, port, tls, TlsMetricsServer.DefaultRequestTimeout);

    /// <summary>Same, with how long one HTTPS connection may take from accept to answer (tests shorten it).</summary>
    internal static MetricsEndpoint Start(NodeMetrics metrics, string hostname, int port, NodeTls? tls, TimeSpan requestTimeout)
    {
        ArgumentNullException.ThrowIfNull(metrics);
        if (port is < 0 or > IPEndPoint.MaxPort)
            throw new SettingsException(PortKey, $"must be between 0 and {IPEndPoint.MaxPort}, got {port}");
        var host = (hostname ?? "").Trim();
        if (host.Length == 0) throw new SettingsException(HostnameKey, "must not be empty (127.0.0.1 serves this machine only; 0.0.0.0 all interfaces)");
        var configured = host;

        // HttpListener spells "all interfaces" + or *; it refuses 0.0.0.0 and ::, which mean the same to an operator.
        var wildcard = host is "+" or "*" or "0.0.0.0" or "::";
        if (wildcard) host = "+";
        // The managed HttpListener cannot parse a prefix with an IPv6 literal.
        if (IPAddress.TryParse(host, out var literal) && literal.AddressFamily == AddressFamily.InterNetworkV6)
            throw new SettingsException(HostnameKey, $"cannot serve metrics on IPv6 address {configured}; use an IPv4 address or a host name (0.0.0.0: all interfaces)");
        var address = wildcard ? IPAddress.Any : Resolve(host);
        var urlHost = wildcard ? Dns.GetHostName() : host;

        if (tls is not null)
        {
            try
            {
                var server = TlsMetricsServer.Start(address, port, metrics.Registry, tls, requestTimeout);
                return new MetricsEndpoint(server.Dispose, new Uri($"https://{urlHost}:{server.Port}/metrics"), server.Port, server);
            }
            catch (SocketException e)
            {
                throw CannotBind(configured, port, CanBind(address) ? PortKey : HostnameKey, e);
            }
        }

        for (var attempt = 1; ; attempt++)
        {
            var bindPort = port != 0 ? port : FreePort(address, configured);
            var server = new MetricServer(host, bindPort, url: "metrics/", registry: metrics.Registry);
            try
            {
                server.Start();
                return new MetricsEndpoint(server.Stop, new Uri($"http://{urlHost}:{bindPort}/metrics"), bindPort, tls: null);
            }
            catch (Exception e) when (e is HttpListenerException or SocketException or ObjectDisposedException or InvalidOperationException)
            {
                // A port picked from 0 may be taken by someone else before we bind it: pick another.
                ((IDisposable)server).Dispose();
                if (port == 0 && attempt < FreePortAttempts) continue;
                throw CannotBind(configured, bindPort, CanBind(address) ? PortKey : HostnameKey, e);
            }
        }
    }

    /// <summary>What a scrape of <paramref name="metrics"/> returns, without a server (tests, status output).</summary>
    public static string Render(NodeMetrics metrics) =>
        Task.Run(() => metrics.RenderAsync()).GetAwaiter().GetResult();

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        // Without TLS, Stop closes the listener (freeing the port) once the serving thread has seen the cancellation.
        _stop();
    }

    private static IPAddress Resolve(string host)
    {
        if (IPAddress.TryParse(host, out var literal)) return literal;
        IPAddress[] addresses;
        try { addresses = Dns.GetHostAddresses(host); }
        catch (Exception e) when (e is SocketException or ArgumentException)
        {
            throw new SettingsException(HostnameKey, $"cannot serve metrics on {host}: the name does not resolve ({e.Message}); set {HostnameKey} to an address of this machine (or {EnabledKey} = off)", e);
        }
        return addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork)
            ?? addresses.FirstOrDefault()
            ?? throw new SettingsException(HostnameKey, $"cannot serve metrics on {host}: the name resolves to no address; set {HostnameKey} to an address of this machine (or {EnabledKey} = off)");
    }

    /// <summary>A port the OS considers free on <paramref name="address"/> right now; it may be taken again before we bind it.</summary>
    private static int FreePort(IPAddress address, string hostname)
    {
        var probe = new TcpListener(address, 0);
        try
        {
            probe.Start();
            return ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        catch (SocketException e)
        {
            throw CannotBind(hostname, 0, HostnameKey, e);
        }
        finally
        {
            probe.Stop();
        }
    }

    /// <summary>Whether <paramref name="address"/> is one this machine can listen on at all: tells a bad hostname from a taken port.</summary>
    private static bool CanBind(IPAddress address)
    {
        var probe = new TcpListener(address, 0);
        try { probe.Start(); return true; }
        catch (SocketException) { return false; }
        finally { probe.Stop(); }
    }

    /// <summary><paramref name="key"/> is the likelier culprit; the message names both keys, since either may be the fix.</summary>
    private static SettingsException CannotBind(string hostname, int port, string key, Exception cause) =>
        new(key,
            $"cannot serve metrics on {hostname}:{port} ({FirstLine(cause.Message)}); set {PortKey} to a free port (0 picks one) " +
            $"or {HostnameKey} to an address of this machine, or turn the endpoint off with {EnabledKey} = off",
            cause);

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();
}
