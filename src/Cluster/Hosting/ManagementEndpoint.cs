using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using System.Text;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Cluster;
using Akka.Management.Cluster.Bootstrap.ContactPoint;
using Newtonsoft.Json;

namespace ActorTrain.Cluster.Hosting;

/// <summary>
/// The node's management endpoint, plain HTTP on akka.management.http.hostname:port: ActorTrain's
/// health checks (<see cref="AlivePath"/>, <see cref="ReadyPath"/>) and the contact point that
/// Akka.Management's Cluster Bootstrap on the other nodes probes (<see cref="SeedNodesPath"/>, the
/// JSON Akka.Management's own route answers). ActorTrain serves these itself: the HTTP server of
/// Akka.Management 1.5.73 (Akka.Http.Shim) fails to start against Ceen.Httpd 0.9.10, the only
/// version served. It stops when the actor system terminates.
/// </summary>
internal sealed class ManagementEndpoint : IDisposable
{
    public const string AlivePath = "/health/alive";
    public const string ReadyPath = "/health/ready";
    public const string SeedNodesPath = "/bootstrap/seed-nodes";
    public const string HostnameKey = "akka.management.http.hostname";
    public const string PortKey = "akka.management.http.port";
    public const string BindHostnameKey = "akka.management.http.bind-hostname";
    public const int DefaultPort = 8558;

    /// <summary>How long readiness waits for the coordinator's status.</summary>
    private static readonly TimeSpan StatusTimeout = TimeSpan.FromSeconds(3);

    /// <summary>A port may still be held for a moment by the previous ActorSystem of this process (a rejoin), or taken after a free one was picked.</summary>
    private const int BindAttempts = 10;

    private readonly ActorSystem _system;
    private readonly HttpListener _listener;
    private int _disposed;

    private ManagementEndpoint(ActorSystem system, HttpListener listener, Uri baseUri)
    {
        _system = system;
        _listener = listener;
        BaseUri = baseUri;
    }

    /// <summary>What the other nodes' discovery lists for this node, e.g. <c>http://10.0.0.1:8558/</c>.</summary>
    public Uri BaseUri { get; }

    /// <summary>Binds the endpoint; an address that cannot be bound is a <see cref="SettingsException"/> naming the keys.</summary>
    public static ManagementEndpoint Start(ActorSystem system)
    {
        var config = system.Settings.Config;
        string Get(string key) => config.HasPath(key) ? config.GetString(key) ?? "" : "";
        var hostname = Get(HostnameKey);
        if (hostname.Length == 0 || hostname == "<hostname>") hostname = Dns.GetHostName();
        var bindHostname = Get(BindHostnameKey);
        if (bindHostname.Length == 0) bindHostname = hostname;
        var portText = Get(PortKey);
        if (!int.TryParse(portText.Length == 0 ? DefaultPort.ToString(System.Globalization.CultureInfo.InvariantCulture) : portText,
                System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port > 65535)
            throw new SettingsException(PortKey, $"expected a port between 0 and 65535, got \"{portText}\"");
        var bindPortText = Get("akka.management.http.bind-port");
        var bindPort = int.TryParse(bindPortText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var b) ? b : port;

        Exception? last = null;
        for (var attempt = 0; attempt < BindAttempts; attempt++)
        {
            var chosen = bindPort == 0 ? FreePort() : bindPort;
            var listener = new HttpListener();
            var prefixHost = bindHostname is "0.0.0.0" or "*" or "+" ? "*" : bindHostname.Contains(':') ? $"[{bindHostname}]" : bindHostname;
            listener.Prefixes.Add($"http://{prefixHost}:{chosen}/");
            try
            {
                listener.Start();
            }
            catch (Exception e) when (e is HttpListenerException or SocketException or IOException)
            {
                last = e;
                listener.Close();
                Thread.Sleep(200);
                continue;
            }
            var advertisedPort = bindPort == port ? chosen : port;
            var host = hostname.Contains(':') ? $"[{hostname}]" : hostname;
            var endpoint = new ManagementEndpoint(system, listener, new Uri($"http://{host}:{advertisedPort}/"));
            _ = endpoint.ServeAsync();
            system.WhenTerminated.ContinueWith(_ => endpoint.Dispose(), TaskScheduler.Default);
            return endpoint;
        }
        throw new SettingsException(PortKey, $"cannot serve the management endpoint on {bindHostname}:{bindPort} ({last?.Message}); " +
            $"is the port in use, e.g. by another node on this machine? Set {PortKey} (and {HostnameKey}) per node");
    }

    private static int FreePort()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        try { return ((IPEndPoint)probe.LocalEndpoint).Port; }
        finally { probe.Stop(); }
    }

    private async Task ServeAsync()
    {
        while (Volatile.Read(ref _disposed) == 0)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            _ = Task.Run(() => AnswerAsync(context));
        }
    }

    private async Task AnswerAsync(HttpListenerContext context)
    {
        var response = context.Response;
        try
        {
            var (code, type, body) = context.Request.HttpMethod is "GET" or "HEAD"
                ? await RouteAsync(context.Request.Url?.AbsolutePath ?? "").ConfigureAwait(false)
                : (405, "text/plain; charset=utf-8", "only GET and HEAD\n");
            var bytes = Encoding.UTF8.GetBytes(body);
            response.StatusCode = code;
            response.ContentType = type;
            response.ContentLength64 = bytes.Length;
            if (context.Request.HttpMethod != "HEAD") await response.OutputStream.WriteAsync(bytes).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // The client went away, or the endpoint is stopping.
        }
        finally
        {
            try { response.Close(); }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException or InvalidOperationException) { }
        }
    }

    private async Task<(int Code, string Type, string Body)> RouteAsync(string path)
    {
        const string text = "text/plain; charset=utf-8";
        var health = NodeHealth.Get(_system);
        switch (path)
        {
            case AlivePath:
            {
                var v = health.Liveness();
                return (v.Healthy ? 200 : 503, text, v.Reason + "\n");
            }
            case ReadyPath:
            {
                var v = await health.ReadinessAsync(StatusTimeout).ConfigureAwait(false);
                return (v.Healthy ? 200 : 503, text, v.Reason + "\n");
            }
            case SeedNodesPath:
                return (200, "application/json", SeedNodesJson());
            default:
                return (404, text, $"no such path; try {AlivePath}, {ReadyPath} or {SeedNodesPath}\n");
        }
    }

    /// <summary>
    /// What this node knows of the cluster, in the form Cluster Bootstrap's contact-point probe
    /// reads (<see cref="HttpBootstrapJsonProtocol.SeedNodes"/>): its reachable members that are
    /// joining or up, or none while it leaves.
    /// </summary>
    private string SeedNodesJson()
    {
        var cluster = Akka.Cluster.Cluster.Get(_system);
        var self = cluster.SelfMember;
        var members = ImmutableList<HttpBootstrapJsonProtocol.ClusterMember>.Empty;
        if (self.Status is not (MemberStatus.Down or MemberStatus.Exiting or MemberStatus.Leaving or MemberStatus.Removed))
        {
            var state = cluster.State;
            members = state.Members
                .Where(m => !state.Unreachable.Contains(m) && m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Joining)
                .Select(m => new HttpBootstrapJsonProtocol.ClusterMember(m.UniqueAddress.Address, m.UniqueAddress.Uid, m.Status, m.Roles))
                .ToImmutableList();
        }
        return JsonConvert.SerializeObject(new HttpBootstrapJsonProtocol.SeedNodes(self.UniqueAddress.Address, members));
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        try { _listener.Stop(); _listener.Close(); }
        catch (ObjectDisposedException) { }
    }
}
