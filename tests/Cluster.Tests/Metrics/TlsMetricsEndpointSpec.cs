using System.Net;
using System.Net.Sockets;
using System.Text;
using ActorTrain.Cluster.Metrics;

namespace ActorTrain.Cluster.Tests.Metrics;

/// <summary>The metrics endpoint of a TLS node: HTTPS, and only for clients with a certificate of the cluster's CA.</summary>
public sealed class TlsMetricsEndpointSpec : IDisposable
{
    private const string Loopback = "127.0.0.1";

    private readonly TlsScrapers tls = new();
    private readonly NodeMetrics metrics = new("node-0");

    public TlsMetricsEndpointSpec() => metrics.SetGeneration(3);

    public void Dispose() => tls.Dispose();

    private async Task AssertScrapesAsync(MetricsEndpoint endpoint)
    {
        using var client = tls.Client(tls.Scraper);
        using var response = await client.GetAsync(endpoint.Url);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("# TYPE actortrain_step_phase_seconds histogram", text);
        Assert.Equal(3, Exposition.Parse(text).Value("actortrain_generation"));
    }

    [Fact]
    public async Task A_client_with_a_certificate_of_the_cluster_CA_must_scrape_over_https()
    {
        using var endpoint = MetricsEndpoint.Start(metrics, Loopback, port: 0, tls.Node);
        Assert.Equal(new Uri($"https://{Loopback}:{endpoint.Port}/metrics"), endpoint.Url);

        await AssertScrapesAsync(endpoint);
        metrics.StepCompleted();
        using var client = tls.Client(tls.Scraper);
        var text = await client.GetStringAsync(endpoint.Url);
        Assert.Equal(1, Exposition.Parse(text).Value("actortrain_steps_completed_total"));
        Assert.All(Exposition.Parse(text), s => Assert.Equal("node-0", s.Labels["node"]));
        // Counted after the server's flush, which the client may not wait for.
        await TlsWaits.UntilAsync(() => endpoint.Tls!.Served >= 2, "both scrapes are counted as served");
        Assert.Equal(2, endpoint.Tls!.Served);
    }

    [Fact]
    public async Task A_client_without_a_certificate_or_with_another_CAs_must_be_refused()
    {
        using var endpoint = MetricsEndpoint.Start(metrics, Loopback, port: 0, tls.Node);

        using (var anonymous = tls.Client(null))
            await Assert.ThrowsAsync<HttpRequestException>(() => anonymous.GetStringAsync(endpoint.Url));
        await TlsWaits.UntilAsync(() => endpoint.Tls!.Dropped >= 1, "the anonymous client is dropped");
        Assert.Contains("no certificate", endpoint.Tls!.LastRefusal);

        using (var stranger = tls.Client(tls.Stranger))
            await Assert.ThrowsAsync<HttpRequestException>(() => stranger.GetStringAsync(endpoint.Url));
        await TlsWaits.UntilAsync(() => endpoint.Tls!.Dropped >= 2, "the client of another CA is dropped");
        Assert.Contains("does not chain to the configured CA", endpoint.Tls!.LastRefusal);
        Assert.Contains("Another CA", endpoint.Tls!.LastRefusal);

        Assert.Equal(0, endpoint.Tls!.Served);
        await AssertScrapesAsync(endpoint);
    }

    [Fact]
    public async Task Plain_http_to_the_tls_port_must_fail()
    {
        using var endpoint = MetricsEndpoint.Start(metrics, Loopback, port: 0, tls.Node);
        using var plain = new HttpClient { Timeout = TestConfig.Timeout };
        await Assert.ThrowsAsync<HttpRequestException>(() => plain.GetStringAsync($"http://{Loopback}:{endpoint.Port}/metrics"));
        Assert.Equal(0, endpoint.Tls!.Served);
        await AssertScrapesAsync(endpoint);
    }

    [Fact]
    public async Task Other_paths_other_methods_and_oversized_heads_must_get_their_status_codes()
    {
        using var endpoint = MetricsEndpoint.Start(metrics, Loopback, port: 0, tls.Node);
        using var client = tls.Client(tls.Scraper);

        using (var response = await client.GetAsync($"https://{Loopback}:{endpoint.Port}/"))
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        using (var response = await client.GetAsync($"https://{Loopback}:{endpoint.Port}/metrics?name[]=x"))
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using (var response = await client.PostAsync(endpoint.Url, new StringContent("x")))
        {
            Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
            Assert.Contains("GET", response.Content.Headers.Allow);
        }

        // Exactly the limit, so the server has read every byte when it answers (no reset to lose the answer).
        var max = TlsMetricsServer.MaxHeadBytes;
        var longLine = Encoding.ASCII.GetBytes("GET /" + new string('a', max - 5));
        Assert.StartsWith("HTTP/1.1 414 ", await tls.RawAsync(endpoint.Port, longLine));
        var bigHeaders = Encoding.ASCII.GetBytes(("GET /metrics HTTP/1.1\r\nX-Junk: " + new string('j', max)).Substring(0, max));
        Assert.StartsWith("HTTP/1.1 431 ", await tls.RawAsync(endpoint.Port, bigHeaders));
        Assert.StartsWith("HTTP/1.1 400 ", await tls.RawAsync(endpoint.Port, "NONSENSE\r\n\r\n"u8.ToArray()));

        await AssertScrapesAsync(endpoint);
    }

    [Fact]
    public async Task Silent_clients_must_not_block_a_scrape_and_must_be_dropped_after_the_request_timeout()
    {
        var timeout = TimeSpan.FromSeconds(1);
        using var endpoint = MetricsEndpoint.Start(metrics, Loopback, port: 0, tls.Node, timeout);
        var target = new IPEndPoint(IPAddress.Loopback, endpoint.Port);

        // One says nothing at all; one completes the handshake, then says nothing.
        using var silent = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await silent.ConnectAsync(target);
        using var handshakeOnly = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await handshakeOnly.ConnectAsync(target);
        await using var handshakeStream = new System.Net.Security.SslStream(new NetworkStream(handshakeOnly, ownsSocket: false));
        using (var cts = new CancellationTokenSource(TestConfig.Timeout))
            await handshakeStream.AuthenticateAsClientAsync(new System.Net.Security.SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                ClientCertificates = [tls.Scraper],
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
            }, cts.Token);

        await AssertScrapesAsync(endpoint);

        // The server closes both once their time is up: reads end (0 bytes, or a reset) well within the test's bound.
        var started = DateTime.UtcNow;
        using (var cts = new CancellationTokenSource(TestConfig.Timeout))
        {
            var buffer = new byte[256];
            await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                if (await silent.ReceiveAsync(buffer, SocketFlags.None, cts.Token) == 0) throw new EndOfStreamException();
            });
            await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                if (await handshakeStream.ReadAsync(buffer, cts.Token) == 0) throw new EndOfStreamException();
            });
            Assert.False(cts.IsCancellationRequested, "the server kept a silent connection open past the test's bound");
        }
        Assert.True(DateTime.UtcNow - started < TestConfig.Timeout);
        await TlsWaits.UntilAsync(() => endpoint.Tls!.Dropped >= 2, "both silent clients are counted");
        await AssertScrapesAsync(endpoint);
    }

    [Fact]
    public async Task Dispose_must_free_the_port()
    {
        var first = MetricsEndpoint.Start(metrics, Loopback, port: 0, tls.Node);
        var port = first.Port;
        first.Dispose();
        first.Dispose();
        using var second = MetricsEndpoint.Start(metrics, Loopback, port, tls.Node);
        Assert.Equal(port, second.Port);
        await AssertScrapesAsync(second);
    }
}

internal static class TlsWaits
{
    public static async Task UntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TestConfig.Timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"Timed out waiting until {what}.");
            await Task.Delay(20);
        }
    }
}
