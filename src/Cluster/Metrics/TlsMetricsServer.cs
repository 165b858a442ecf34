using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using ActorTrain.Cluster.Security;
using Prometheus;

namespace ActorTrain.Cluster.Metrics;

/// <summary>
/// The metrics endpoint when TLS is on: HTTPS with mutual authentication. The server presents the
/// node's certificate and requires a client certificate that chains to the cluster's CA
/// (<see cref="NodeTls.Trust"/>); a scraper without one never gets a byte of HTTP.
/// </summary>
/// <remarks>
/// Deliberately small: one request per connection (answered with <c>Connection: close</c>),
/// <c>GET /metrics</c> answers 200 with the registry's text format, any other path 404, any other
/// method 405. A stranger cannot hold it: every connection runs in a task of its own, has
/// <see cref="RequestTimeout"/> for the handshake, the request and the answer together, and a
/// request head (request line and headers) larger than <see cref="MaxHeadBytes"/> is answered
/// with 414/431 and closed. At most <see cref="MaxConnections"/> connections are served at once;
/// more are closed on accept. Connections that end without an answer are counted (<see cref="Dropped"/>), never thrown.
/// </remarks>
internal sealed class TlsMetricsServer : IDisposable
{
    public const int MaxHeadBytes = 8 * 1024;
    public const int MaxConnections = 64;
    public static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromSeconds(10);

    private const string TextFormat = "text/plain; version=0.0.4; charset=utf-8";
    private static readonly byte[] EndOfHead = "\r\n\r\n"u8.ToArray();

    private readonly TcpListener _listener;
    private readonly CollectorRegistry _registry;
    private readonly NodeTls _tls;
    private readonly SslStreamCertificateContext _certificate;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _acceptLoop;
    private int _open;
    private long _dropped;
    private long _served;
    private string? _lastRefusal;

    private TlsMetricsServer(TcpListener listener, CollectorRegistry registry, NodeTls tls, TimeSpan requestTimeout)
    {
        _listener = listener;
        _registry = registry;
        _tls = tls;
        RequestTimeout = requestTimeout;
        // Offline: the chain is built from what is at hand, never fetched from the network.
        _certificate = SslStreamCertificateContext.Create(tls.Certificate, additionalCertificates: null, offline: true);
        Port = ((IPEndPoint)listener.LocalEndpoint).Port;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public int Port { get; }

    public TimeSpan RequestTimeout { get; }

    /// <summary>Connections that ended without an answer: refused certificate, failed handshake, timeout, too many at once.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Requests answered (any status code); counted once the answer is flushed, which can be after the client has read it.</summary>
    public long Served => Interlocked.Read(ref _served);

    /// <summary>Connections accepted and not yet closed.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>Why the last client certificate was refused, or null.</summary>
    public string? LastRefusal => Volatile.Read(ref _lastRefusal);

    /// <summary>Listens on <paramref name="address"/>:<paramref name="port"/> (0: a free port); a bind failure is the caller's <see cref="SocketException"/>.</summary>
    public static TlsMetricsServer Start(IPAddress address, int port, CollectorRegistry registry, NodeTls tls, TimeSpan requestTimeout)
    {
        var listener = new TcpListener(address, port);
        try
        {
            listener.Start();
            return new TlsMetricsServer(listener, registry, tls, requestTimeout);
        }
        catch
        {
            listener.Stop();
            throw;
        }
    }

    public void Dispose()
    {
        if (_stopping.IsCancellationRequested) return;
        _stopping.Cancel();
        _listener.Stop();
        // The loop ends at once on the cancellation; connections end on theirs.
        _acceptLoop.Wait(TimeSpan.FromSeconds(5));
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                // A connection reset before it was accepted; the listener itself still listens.
                if (_stopping.IsCancellationRequested) return;
                continue;
            }

            if (Interlocked.Increment(ref _open) > MaxConnections)
            {
                Interlocked.Decrement(ref _open);
                Interlocked.Increment(ref _dropped);
                socket.Dispose();
                continue;
            }
            _ = Task.Run(() => ServeAsync(socket));
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        deadline.CancelAfter(RequestTimeout);
        try
        {
            socket.NoDelay = true;
            await using var stream = new SslStream(new NetworkStream(socket, ownsSocket: true));
            await stream.AuthenticateAsServerAsync(ServerOptions(), deadline.Token).ConfigureAwait(false);
            var response = await AnswerAsync(stream, deadline.Token).ConfigureAwait(false);
            await stream.WriteAsync(response, deadline.Token).ConfigureAwait(false);
            await stream.FlushAsync(deadline.Token).ConfigureAwait(false);
            Interlocked.Increment(ref _served);
            try { await stream.ShutdownAsync().WaitAsync(deadline.Token).ConfigureAwait(false); }
            catch (Exception) { /* answered; the client may already have gone */ }
        }
        catch (Exception)
        {
            // Whatever a stranger's bytes or a dropped connection cause (a failed handshake, a refused
            // certificate, a timeout, a reset), it ends this connection only; the server goes on.
            Interlocked.Increment(ref _dropped);
        }
        finally
        {
            socket.Dispose();
            Interlocked.Decrement(ref _open);
        }
    }

    private SslServerAuthenticationOptions ServerOptions() => new()
    {
        ServerCertificateContext = _certificate,
        ClientCertificateRequired = true,
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = (_, certificate, _, _) =>
        {
            if (_tls.Trust.Problem(certificate) is not { } problem) return true;
            Volatile.Write(ref _lastRefusal, problem);
            return false;
        },
    };

    /// <summary>Reads one request head and returns the whole answer to it.</summary>
    private async Task<byte[]> AnswerAsync(SslStream stream, CancellationToken cancellationToken)
    {
        var buffer = new byte[MaxHeadBytes];
        var length = 0;
        int end;
        while ((end = buffer.AsSpan(0, length).IndexOf(EndOfHead)) < 0)
        {
            if (length == buffer.Length)
            {
                var lineEnded = buffer.AsSpan(0, length).IndexOf("\r\n"u8) >= 0;
                return lineEnded
                    ? Response(431, "Request Header Fields Too Large", "request headers too large\n")
                    : Response(414, "URI Too Long", "request line too long\n");
            }
            var read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken).ConfigureAwait(false);
            if (read == 0) throw new EndOfStreamException("the client closed before the end of its request");
            length += read;
        }

        var head = Encoding.ASCII.GetString(buffer, 0, end);
        var requestLine = head.Split("\r\n", 2)[0];
        var parts = requestLine.Split(' ');
        if (parts.Length != 3 || parts[0].Length == 0 || !parts[1].StartsWith('/') || !parts[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
            return Response(400, "Bad Request", "malformed request line\n");
        if (parts[0] != "GET")
            return Response(405, "Method Not Allowed", "only GET is served\n", "Allow: GET\r\n");
        var path = parts[1].Split('?', 2)[0];
        if (path is not ("/metrics" or "/metrics/"))
            return Response(404, "Not Found", "metrics are at /metrics\n");

        using var body = new MemoryStream();
        await _registry.CollectAndExportAsTextAsync(body, cancellationToken).ConfigureAwait(false);
        return Response(200, "OK", body.GetBuffer().AsSpan(0, (int)body.Length), TextFormat, "");
    }

    private static byte[] Response(int code, string reason, string text, string extraHeaders = "") =>
        Response(code, reason, Encoding.UTF8.GetBytes(text), "text/plain; charset=utf-8", extraHeaders);

    private static byte[] Response(int code, string reason, ReadOnlySpan<byte> body, string contentType, string extraHeaders)
    {
        var head = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 {code} {reason}\r\nContent-Type: {contentType}\r\nContent-Length: {body.Length}\r\n{extraHeaders}Connection: close\r\n\r\n");
        var response = new byte[head.Length + body.Length];
        head.CopyTo(response, 0);
        body.CopyTo(response.AsSpan(head.Length));
        return response;
    }
}
