using System.Net;
using System.Net.Sockets;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Settings;

namespace ActorTrain.Cluster.Tests.Metrics;

public sealed class MetricsEndpointSpec : IDisposable
{
    private const string Loopback = "127.0.0.1";

    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };

    public void Dispose() => _http.Dispose();

    private async Task<IReadOnlyList<Sample>> ScrapeAsync(Uri url)
    {
        using var response = await _http.GetAsync(url);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return Exposition.Parse(await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task MetricsEndpoint_must_serve_the_node_metrics_in_prometheus_text_format()
    {
        var metrics = new NodeMetrics("node-0");
        using var endpoint = MetricsEndpoint.Start(metrics, Loopback, port: 0);
        for (var i = 0; i < 4; i++) metrics.ObserveStep(computeMs: 12, intraMs: 1, crossMs: 3, stepMs: 16);
        metrics.AddBytes(TransportLabel.Akka, sent: true, 65_536);
        metrics.AddBytes(TransportLabel.Akka, sent: false, 65_000);
        metrics.Dropped(DropReason.Malformed);
        metrics.SetGeneration(2);
        metrics.SetWorldSize(4);
        metrics.StepCompleted();

        Assert.True(endpoint.Port > 0);
        Assert.Equal(new Uri($"http://{Loopback}:{endpoint.Port}/metrics"), endpoint.Url);

        using var response = await _http.GetAsync(endpoint.Url);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var contentType = response.Content.Headers.ContentType;
        Assert.NotNull(contentType);
        Assert.Equal("text/plain", contentType.MediaType);
        Assert.Contains(contentType.Parameters, p => p.Name == "version" && p.Value == "0.0.4");

        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("# TYPE actortrain_step_phase_seconds histogram", text);
        var s = Exposition.Parse(text);
        foreach (var phase in new[] { "compute", "intra_node", "cross_node", "step" })
        {
            Assert.Equal(4, s.Value("actortrain_step_phase_seconds_count", ("phase", phase)));
            Assert.Equal(4, s.Value("actortrain_step_phase_seconds_bucket", ("phase", phase), ("le", "+Inf")));
        }
        Assert.Equal(0.064, s.Value("actortrain_step_phase_seconds_sum", ("phase", "step")), 9);
        Assert.Equal(65_536, s.Value("actortrain_transport_bytes_total", ("transport", "akka"), ("direction", "sent")));
        Assert.Equal(65_000, s.Value("actortrain_transport_bytes_total", ("transport", "akka"), ("direction", "received")));
        Assert.Equal(1, s.Value("actortrain_dropped_messages_total", ("reason", "malformed")));
        Assert.Equal(2, s.Value("actortrain_generation"));
        Assert.Equal(4, s.Value("actortrain_world_size"));
        Assert.Equal(1, s.Value("actortrain_steps_completed_total"));
        Assert.All(s, x => Assert.Equal("node-0", x.Labels.GetValueOrDefault("node")));

        // A later scrape sees later values.
        metrics.StepCompleted();
        Assert.Equal(2, (await ScrapeAsync(endpoint.Url)).Value("actortrain_steps_completed_total"));
    }

    [Fact]
    public async Task MetricsEndpoints_of_two_nodes_in_one_process_must_serve_their_own_values()
    {
        var a = new NodeMetrics("node-a");
        var b = new NodeMetrics("node-b");
        using var endpointA = MetricsEndpoint.Start(a, Loopback, port: 0);
        using var endpointB = MetricsEndpoint.Start(b, Loopback, port: 0);
        Assert.NotEqual(endpointA.Port, endpointB.Port);
        a.SetMembers(2);
        b.SetMembers(3);

        var sa = await ScrapeAsync(endpointA.Url);
        var sb = await ScrapeAsync(endpointB.Url);
        Assert.Equal(2, sa.Value("actortrain_members"));
        Assert.Equal(3, sb.Value("actortrain_members"));
        Assert.All(sa, x => Assert.Equal("node-a", x.Labels["node"]));
        Assert.All(sb, x => Assert.Equal("node-b", x.Labels["node"]));
    }

    [Fact]
    public async Task MetricsEndpoint_must_free_its_port_when_disposed()
    {
        var metrics = new NodeMetrics("node-0");
        var first = MetricsEndpoint.Start(metrics, Loopback, port: 0);
        var port = first.Port;
        first.Dispose();
        first.Dispose(); // idempotent

        using var second = MetricsEndpoint.Start(metrics, Loopback, port);
        Assert.Equal(port, second.Port);
        metrics.SetEpoch(7);
        Assert.Equal(7, (await ScrapeAsync(second.Url)).Value("actortrain_epoch"));
    }

    [Fact]
    public void MetricsEndpoint_must_name_the_address_and_the_keys_when_the_port_is_taken()
    {
        var occupant = new TcpListener(IPAddress.Loopback, 0);
        occupant.Start();
        try
        {
            var port = ((IPEndPoint)occupant.LocalEndpoint).Port;
            var e = Assert.Throws<SettingsException>(() => MetricsEndpoint.Start(new NodeMetrics("node-0"), Loopback, port));
            Assert.Equal("actortrain.metrics.port", e.Path);
            Assert.Contains($"{Loopback}:{port}", e.Message);
            Assert.Contains("actortrain.metrics.port", e.Message);
            Assert.Contains("actortrain.metrics.hostname", e.Message);
        }
        finally
        {
            occupant.Stop();
        }
    }

    [Fact]
    public void MetricsEndpoint_must_name_the_address_and_the_keys_when_the_hostname_is_not_this_machine()
    {
        // 192.0.2.0/24 is reserved for documentation (RFC 5737): never an address of this machine.
        var e = Assert.Throws<SettingsException>(() => MetricsEndpoint.Start(new NodeMetrics("node-0"), "192.0.2.1", 0));
        Assert.Equal("actortrain.metrics.hostname", e.Path);
        Assert.Contains("192.0.2.1:", e.Message);
        Assert.Contains("actortrain.metrics.hostname", e.Message);
        Assert.Contains("actortrain.metrics.port", e.Message);
    }

    [Fact]
    public void MetricsEndpoint_must_refuse_an_invalid_port_or_hostname_naming_the_key()
    {
        var e = Assert.Throws<SettingsException>(() => MetricsEndpoint.Start(new NodeMetrics("node-0"), Loopback, 70_000));
        Assert.Equal("actortrain.metrics.port", e.Path);
        var empty = Assert.Throws<SettingsException>(() => MetricsEndpoint.Start(new NodeMetrics("node-0"), " ", 0));
        Assert.Equal("actortrain.metrics.hostname", empty.Path);
        var ipv6 = Assert.Throws<SettingsException>(() => MetricsEndpoint.Start(new NodeMetrics("node-0"), "::1", 0));
        Assert.Equal("actortrain.metrics.hostname", ipv6.Path);
    }
}
