using ActorTrain.Cluster.Metrics;

namespace ActorTrain.Cluster.Tests.Metrics;

public class NodeMetricsSpec
{
    private static readonly string[] Phases = ["compute", "intra_node", "cross_node", "step"];

    private static IReadOnlyList<Sample> Scrape(NodeMetrics metrics) => Exposition.Parse(MetricsEndpoint.Render(metrics));

    [Fact]
    public void NodeMetrics_must_count_every_phase_of_every_step_in_seconds()
    {
        var metrics = new NodeMetrics("node-a");
        metrics.ObserveStep(computeMs: 5, intraMs: 0.05, crossMs: 20, stepMs: 30);
        metrics.ObserveStep(computeMs: 7, intraMs: 0.05, crossMs: 40, stepMs: 50);
        metrics.ObserveStep(computeMs: 9, intraMs: 0.05, crossMs: 60, stepMs: 20_000);

        var s = Scrape(metrics);
        foreach (var phase in Phases)
        {
            Assert.Equal(3, s.Value("actortrain_step_phase_seconds_count", ("phase", phase)));
            Assert.Equal(3, s.Value("actortrain_step_phase_seconds_bucket", ("phase", phase), ("le", "+Inf")));
            var buckets = s.Where(x => x.Name == "actortrain_step_phase_seconds_bucket" && x.Has(("phase", phase))).ToList();
            Assert.Equal(NodeMetrics.PhaseBuckets.Length + 1, buckets.Count);
            Assert.True(buckets.Zip(buckets.Skip(1)).All(p => p.First.Value <= p.Second.Value), $"{phase}: buckets must be cumulative");
        }
        Assert.Equal(0.021, s.Value("actortrain_step_phase_seconds_sum", ("phase", "compute")), 9);
        Assert.Equal(0.12, s.Value("actortrain_step_phase_seconds_sum", ("phase", "cross_node")), 9);
        // 0.1 ms is the first bound: 0.05 ms falls in it; 20 s only in +Inf.
        Assert.Equal(3, s.Value("actortrain_step_phase_seconds_bucket", ("phase", "intra_node"), ("le", "0.0001")));
        Assert.Equal(2, s.Value("actortrain_step_phase_seconds_bucket", ("phase", "step"), ("le", "13.1072")));
        // Bounds double from 0.1 ms: 5 ms is at most 6.4 ms; 7 and 9 ms fall in the next bucket, 12.8 ms.
        Assert.Equal(0, s.Value("actortrain_step_phase_seconds_bucket", ("phase", "compute"), ("le", "0.0032")));
        Assert.Equal(1, s.Value("actortrain_step_phase_seconds_bucket", ("phase", "compute"), ("le", "0.0064")));
        Assert.Equal(3, s.Value("actortrain_step_phase_seconds_bucket", ("phase", "compute"), ("le", "0.0128")));
    }

    [Fact]
    public void NodeMetrics_must_span_a_tenth_of_a_millisecond_to_ten_seconds()
    {
        Assert.Equal(0.0001, NodeMetrics.PhaseBuckets[0]);
        Assert.True(NodeMetrics.PhaseBuckets[^1] >= 10, $"last bucket {NodeMetrics.PhaseBuckets[^1]} s");
    }

    [Fact]
    public void NodeMetrics_must_leave_out_phases_that_are_not_finite()
    {
        var metrics = new NodeMetrics("node-a");
        metrics.ObserveStep(double.NaN, double.PositiveInfinity, -1, 10);

        var s = Scrape(metrics);
        Assert.Equal(0, s.Value("actortrain_step_phase_seconds_count", ("phase", "compute")));
        Assert.Equal(0, s.Value("actortrain_step_phase_seconds_count", ("phase", "intra_node")));
        Assert.Equal(1, s.Value("actortrain_step_phase_seconds_count", ("phase", "cross_node")));
        Assert.Equal(0, s.Value("actortrain_step_phase_seconds_sum", ("phase", "cross_node")));
        Assert.Equal(1, s.Value("actortrain_step_phase_seconds_count", ("phase", "step")));
    }

    [Fact]
    public void NodeMetrics_must_export_counters_and_gauges_with_their_values()
    {
        var metrics = new NodeMetrics("node-a");
        metrics.AddBytes(TransportLabel.Akka, sent: true, 1000);
        metrics.AddBytes(TransportLabel.Akka, sent: true, 24);
        metrics.AddBytes(TransportLabel.Akka, sent: false, 512);
        metrics.AddBytes(TransportLabel.Tcp, sent: false, 7);
        metrics.Dropped(DropReason.Stale);
        metrics.Dropped(DropReason.Stale);
        metrics.Dropped(DropReason.UnknownPeer);
        metrics.Dropped(DropReason.RejectedConnection, 5);
        metrics.Dropped(DropReason.DroppedFrame, 0);
        metrics.SetStraggler("node-c", 2, 2.5);
        metrics.SetStraggler("node-d", 3, 1.75);
        metrics.SetGeneration(3);
        metrics.SetMembers(4);
        metrics.SetWorldSize(8);
        metrics.SetEpoch(2);
        for (var i = 0; i < 5; i++) metrics.StepCompleted();
        metrics.StepSkipped();
        metrics.NonFiniteGradient();
        metrics.NonFiniteGradient();

        var s = Scrape(metrics);
        Assert.Equal(1024, s.Value("actortrain_transport_bytes_total", ("transport", "akka"), ("direction", "sent")));
        Assert.Equal(512, s.Value("actortrain_transport_bytes_total", ("transport", "akka"), ("direction", "received")));
        Assert.Equal(0, s.Value("actortrain_transport_bytes_total", ("transport", "tcp"), ("direction", "sent")));
        Assert.Equal(7, s.Value("actortrain_transport_bytes_total", ("transport", "tcp"), ("direction", "received")));
        Assert.Equal(2, s.Value("actortrain_dropped_messages_total", ("reason", "stale")));
        Assert.Equal(1, s.Value("actortrain_dropped_messages_total", ("reason", "unknown_peer")));
        Assert.Equal(0, s.Value("actortrain_dropped_messages_total", ("reason", "malformed")));
        Assert.Equal(5, s.Value("actortrain_dropped_messages_total", ("reason", "rejected_connection")));
        Assert.Equal(0, s.Value("actortrain_dropped_messages_total", ("reason", "dropped_frame")));
        // The straggler that caught up reads 0; the current one its slowdown.
        Assert.Equal(0, s.Value("actortrain_straggler", ("straggler_node", "node-c"), ("straggler_rank", "2")));
        Assert.Equal(1.75, s.Value("actortrain_straggler", ("straggler_node", "node-d"), ("straggler_rank", "3")));
        Assert.Equal(3, s.Value("actortrain_generation"));
        Assert.Equal(4, s.Value("actortrain_members"));
        Assert.Equal(8, s.Value("actortrain_world_size"));
        Assert.Equal(2, s.Value("actortrain_epoch"));
        Assert.Equal(5, s.Value("actortrain_steps_completed_total"));
        Assert.Equal(1, s.Value("actortrain_skipped_steps_total"));
        Assert.Equal(2, s.Value("actortrain_non_finite_gradients_total"));
    }

    [Fact]
    public void NodeMetrics_must_read_the_process_memory_and_collections_at_each_scrape()
    {
        var metrics = new NodeMetrics("node-a");
        var before = Scrape(metrics);
        GC.Collect(2, GCCollectionMode.Forced, blocking: true);
        var after = Scrape(metrics);

        Assert.InRange(after.Value("actortrain_process_resident_bytes"), 1 << 20, 1L << 40);
        Assert.InRange(after.Value("actortrain_managed_heap_bytes"), 1, 1L << 40);
        // Other tests collect too: at least the forced collection, at most what the runtime counts now.
        Assert.InRange(after.Value("actortrain_gc_collections", ("generation", "2")),
            before.Value("actortrain_gc_collections", ("generation", "2")) + 1, GC.CollectionCount(2));
        Assert.True(after.Value("actortrain_gc_collections", ("generation", "0")) >= after.Value("actortrain_gc_collections", ("generation", "2")));
    }

    [Fact]
    public void NodeMetrics_must_label_every_series_with_the_node_and_document_every_metric()
    {
        var metrics = new NodeMetrics("10.0.0.7:4053");
        metrics.ObserveStep(1, 1, 1, 3);
        metrics.Dropped(DropReason.Duplicate);

        var text = MetricsEndpoint.Render(metrics);
        var s = Exposition.Parse(text);
        Assert.NotEmpty(s);
        Assert.All(s, x => Assert.Equal("10.0.0.7:4053", x.Labels.GetValueOrDefault("node")));
        Assert.All(s, x => Assert.StartsWith("actortrain_", x.Name));
        foreach (var name in new[]
                 {
                     "actortrain_step_phase_seconds", "actortrain_transport_bytes_total", "actortrain_dropped_messages_total",
                     "actortrain_generation", "actortrain_members", "actortrain_world_size", "actortrain_epoch",
                     "actortrain_steps_completed_total", "actortrain_skipped_steps_total", "actortrain_non_finite_gradients_total",
                     "actortrain_process_resident_bytes", "actortrain_managed_heap_bytes", "actortrain_gc_collections",
                 })
        {
            Assert.Contains($"# HELP {name} ", text);
            Assert.Contains($"# TYPE {name} ", text);
        }
    }

    [Fact]
    public void NodeMetrics_instances_must_not_share_values()
    {
        var a = new NodeMetrics("node-a");
        var b = new NodeMetrics("node-b");
        a.StepCompleted();
        a.StepCompleted();
        a.AddBytes(TransportLabel.Akka, sent: true, 100);
        a.SetGeneration(5);
        b.StepCompleted();
        b.ObserveStep(1, 2, 3, 6);

        var sa = Scrape(a);
        var sb = Scrape(b);
        Assert.Equal(2, sa.Value("actortrain_steps_completed_total"));
        Assert.Equal(1, sb.Value("actortrain_steps_completed_total"));
        Assert.Equal(100, sa.Value("actortrain_transport_bytes_total", ("transport", "akka"), ("direction", "sent")));
        Assert.Equal(0, sb.Value("actortrain_transport_bytes_total", ("transport", "akka"), ("direction", "sent")));
        Assert.Equal(5, sa.Value("actortrain_generation"));
        Assert.Equal(0, sb.Value("actortrain_generation"));
        Assert.Equal(0, sa.Value("actortrain_step_phase_seconds_count", ("phase", "step")));
        Assert.Equal(1, sb.Value("actortrain_step_phase_seconds_count", ("phase", "step")));
        Assert.All(sb, x => Assert.Equal("node-b", x.Labels["node"]));
        // Nothing leaks into prometheus-net's process-wide default registry either.
        Assert.DoesNotContain("actortrain_", Render(Prometheus.Metrics.DefaultRegistry));
    }

    [Fact]
    public void NodeMetrics_must_be_safe_to_update_from_many_threads()
    {
        var metrics = new NodeMetrics("node-a");
        Parallel.For(0, 8, _ =>
        {
            for (var i = 0; i < 1000; i++)
            {
                metrics.ObserveStep(1, 1, 1, 3);
                metrics.AddBytes(TransportLabel.Akka, sent: true, 4);
                metrics.StepCompleted();
            }
        });

        var s = Scrape(metrics);
        Assert.Equal(8000, s.Value("actortrain_step_phase_seconds_count", ("phase", "step")));
        Assert.Equal(32000, s.Value("actortrain_transport_bytes_total", ("transport", "akka"), ("direction", "sent")));
        Assert.Equal(8000, s.Value("actortrain_steps_completed_total"));
    }

    [Fact]
    public void NodeMetrics_must_refuse_unknown_transports_and_negative_byte_counts()
    {
        var metrics = new NodeMetrics("node-a");
        Assert.Throws<ArgumentException>(() => metrics.AddBytes("udp", sent: true, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => metrics.AddBytes(TransportLabel.Akka, sent: true, -1));
        Assert.Throws<ArgumentException>(() => metrics.Dropped(""));
        Assert.Throws<ArgumentException>(() => new NodeMetrics(" "));
    }

    private static string Render(Prometheus.CollectorRegistry registry)
    {
        using var buffer = new MemoryStream();
        registry.CollectAndExportAsTextAsync(buffer).Wait(TimeSpan.FromSeconds(10));
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }
}
