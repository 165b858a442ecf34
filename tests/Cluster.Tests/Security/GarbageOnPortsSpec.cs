using System.Buffers.Binary;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Tests.Metrics;
using Akka.Actor;

namespace ActorTrain.Cluster.Tests.Security;

/// <summary>
/// Bytes that are not the protocol, written by a stranger to the ports a node opens (Akka remoting,
/// with and without TLS, and the metrics endpoint, plain HTTP and HTTPS): the node stays up and
/// serves the next correct client. (The TCP data plane's listener has the same tests in Sync.Tests.)
/// </summary>
public class GarbageOnPortsSpec
{
    /// <summary>What a stranger sends, each on a connection of its own.</summary>
    private static IEnumerable<byte[]> Garbage()
    {
        var random = new Random(11);
        var noise = new byte[8192];
        random.NextBytes(noise);
        yield return noise;

        // Akka's framing is a 4-byte little-endian length before each frame.
        var oversized = new byte[20];
        BinaryPrimitives.WriteInt32LittleEndian(oversized, int.MaxValue);
        yield return oversized;

        var negative = new byte[20];
        BinaryPrimitives.WriteInt32LittleEndian(negative, -5);
        yield return negative;

        var truncated = new byte[14];
        BinaryPrimitives.WriteInt32LittleEndian(truncated, 1000);
        yield return truncated;

        // A well-framed frame whose content is not Akka's protocol.
        var framed = new byte[4 + 200];
        BinaryPrimitives.WriteInt32LittleEndian(framed, 200);
        random.NextBytes(framed.AsSpan(4));
        yield return framed;
    }

    [Fact]
    public async Task Garbage_on_the_remoting_port_leaves_the_node_up_and_joinable()
    {
        await using var nodes = new TlsNodes();
        var seed = await nodes.StartSeedAsync("");

        await SendEachAsync(RemotingEndPoint(seed), Garbage());

        Assert.False(seed.WhenTerminated.IsCompleted);
        var joiner = nodes.StartJoiner(seed, "");
        await TlsNodes.WaitUntilAsync(() => TlsNodes.IsUp(joiner), TestConfig.Timeout, "a correct node joins after the garbage");
    }

    [Fact]
    public async Task Garbage_and_a_tls_client_without_a_certificate_on_the_tls_remoting_port_leave_the_node_up_and_joinable()
    {
        await using var nodes = new TlsNodes();
        var seed = await nodes.StartSeedAsync(TlsNodes.TlsHocon(nodes.NodeCertificate("seed"), nodes.AuthorityFile));
        var endpoint = RemotingEndPoint(seed);

        await SendEachAsync(endpoint, Garbage());
        Assert.NotNull(await TlsWithoutCertificateFailureAsync(endpoint));

        Assert.False(seed.WhenTerminated.IsCompleted);
        var joiner = nodes.StartJoiner(seed, TlsNodes.TlsHocon(nodes.NodeCertificate("worker"), nodes.AuthorityFile));
        await TlsNodes.WaitUntilAsync(() => TlsNodes.IsUp(joiner), TestConfig.Timeout, "a correct node joins after the garbage");
    }

    [Fact]
    public async Task Garbage_on_the_metrics_port_leaves_the_endpoint_serving()
    {
        var metrics = new NodeMetrics("node-0");
        metrics.SetGeneration(3);
        using var endpoint = MetricsEndpoint.Start(metrics, "127.0.0.1", port: 0);
        var requests = Garbage().Concat(BadHttpRequests());

        await SendEachAsync(new IPEndPoint(IPAddress.Loopback, endpoint.Port), requests);

        using var http = new HttpClient { Timeout = TestConfig.Timeout };
        using var response = await http.GetAsync(endpoint.Url);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("actortrain_generation{node=\"node-0\"} 3", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Garbage_plain_http_and_a_client_without_a_certificate_on_the_https_metrics_port_leave_it_serving()
    {
        using var tls = new TlsScrapers();
        var metrics = new NodeMetrics("node-0");
        metrics.SetGeneration(3);
        using var endpoint = MetricsEndpoint.Start(metrics, "127.0.0.1", port: 0, tls.Node);
        var target = new IPEndPoint(IPAddress.Loopback, endpoint.Port);

        // Outside TLS: none of it is a TLS handshake.
        await SendEachAsync(target, Garbage().Concat(BadHttpRequests()));
        Assert.NotNull(await TlsWithoutCertificateFailureAsync(target));
        // Inside TLS, from a client the server admits: a request line far over the limit.
        try
        {
            Assert.StartsWith("HTTP/1.1 414 ", await tls.RawAsync(endpoint.Port, Encoding.ASCII.GetBytes("GET /" + new string('a', 200_000) + " HTTP/1.1\r\n\r\n")));
        }
        catch (IOException)
        {
            // Answered and closed before the client had written it all: the write or the read is reset.
        }

        // The server counts an answer after flushing it, so the client can have read it first: wait until every
        // earlier connection is closed before reading the count, and until the scrape is counted after.
        await TlsWaits.UntilAsync(() => endpoint.Tls!.Open == 0, "the earlier connections are closed");
        using var client = tls.Client(tls.Scraper);
        var servedBefore = endpoint.Tls!.Served;
        Assert.Contains("actortrain_generation{node=\"node-0\"} 3", await client.GetStringAsync(endpoint.Url));
        await TlsWaits.UntilAsync(() => endpoint.Tls.Served >= servedBefore + 1, "the scrape is counted as served");
        Assert.Equal(servedBefore + 1, endpoint.Tls.Served);
        var strangers = Garbage().Count() + BadHttpRequests().Count() + 1;
        await TlsWaits.UntilAsync(() => endpoint.Tls.Dropped >= strangers, $"the {strangers} strangers are counted as dropped");
    }

    /// <summary>HTTP requests that are wrong in size or shape (the plain endpoint answers or drops them; the HTTPS one sees no handshake).</summary>
    private static IEnumerable<byte[]> BadHttpRequests() =>
    [
        Encoding.ASCII.GetBytes("GET /" + new string('a', 200_000) + " HTTP/1.1\r\nHost: x\r\n\r\n"),
        Encoding.ASCII.GetBytes("GET /metr"),
        Encoding.ASCII.GetBytes("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nab"),
        Encoding.ASCII.GetBytes("GET /metrics HTTP/1.1\r\nHost: x\r\n" + string.Concat(Enumerable.Repeat("X-Junk: " + new string('j', 1000) + "\r\n", 200)) + "\r\n"),
    ];

    private static IPEndPoint RemotingEndPoint(ActorSystem system) =>
        new(IPAddress.Loopback, Akka.Cluster.Cluster.Get(system).SelfAddress.Port!.Value);

    /// <summary>Writes each payload on a fresh connection, then gives the server a moment to read it (or to close) before closing.</summary>
    private static async Task SendEachAsync(IPEndPoint target, IEnumerable<byte[]> payloads)
    {
        foreach (var payload in payloads)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            using var cts = new CancellationTokenSource(TestConfig.Timeout);
            await socket.ConnectAsync(target, cts.Token);
            try
            {
                await socket.SendAsync(payload, SocketFlags.None, cts.Token);
                socket.Shutdown(SocketShutdown.Send);
                using var read = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
                var buffer = new byte[4096];
                while (await socket.ReceiveAsync(buffer, SocketFlags.None, read.Token) > 0)
                {
                }
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                // Reset, or still open after half a second: either way the stranger leaves.
            }
        }
    }

    /// <summary>A TLS client that presents no certificate: returns how the server ended it (null if it kept talking).</summary>
    private static async Task<Exception?> TlsWithoutCertificateFailureAsync(IPEndPoint target)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var cts = new CancellationTokenSource(TestConfig.Timeout);
        await socket.ConnectAsync(target, cts.Token);
        await using var stream = new SslStream(new NetworkStream(socket, ownsSocket: false));
        try
        {
            await stream.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            }, cts.Token);
            var frame = new byte[64];
            BinaryPrimitives.WriteInt32LittleEndian(frame, 60);
            await stream.WriteAsync(frame, cts.Token);
            var buffer = new byte[64];
            return await stream.ReadAsync(buffer, cts.Token) == 0 ? new EndOfStreamException("closed by the server") : null;
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            return e;
        }
    }
}
