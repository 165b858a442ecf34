using System.Text;
using Prometheus;

namespace ActorTrain.Cluster.Metrics;

/// <summary>
/// The Prometheus metrics of one node process. They live in a registry owned by this instance,
/// not prometheus-net's static default one, so several nodes (or tests) in one process keep
/// their own values; every series carries the constant label <c>node</c>. All methods are
/// thread-safe and cheap enough for the step loop and the gradient path.
/// </summary>
internal sealed class NodeMetrics
{
    /// <summary>Values of the <c>phase</c> label of <c>actortrain_step_phase_seconds</c>, as in run-report.json's timings_ms.</summary>
    public static class Phase
    {
        public const string Compute = "compute";
        public const string IntraNode = "intra_node";
        public const string CrossNode = "cross_node";
        public const string Step = "step";
    }

    /// <summary>
    /// 0.1 ms doubling up to about 13 s: 18 buckets span one tiny bucket's all-reduce to a slow
    /// CPU step, and doubling keeps the bucket bounds short, exact decimals.
    /// </summary>
    internal static readonly double[] PhaseBuckets = Histogram.ExponentialBuckets(start: 0.0001, factor: 2, count: 18);

    private readonly Histogram.Child _compute, _intraNode, _crossNode, _step;
    private readonly Counter _bytes;
    private readonly Counter.Child _akkaSent, _akkaReceived, _tcpSent, _tcpReceived;
    private readonly Counter _dropped;
    private readonly Gauge _generation, _members, _worldSize, _epoch, _straggler;
    private readonly Counter _stepsCompleted, _skippedSteps, _nonFiniteGradients;

    public NodeMetrics(string nodeName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nodeName);
        NodeName = nodeName;
        Registry = Prometheus.Metrics.NewCustomRegistry();
        var factory = Prometheus.Metrics.WithCustomRegistry(Registry)
            .WithLabels(new Dictionary<string, string> { ["node"] = nodeName });

        var phases = factory.CreateHistogram("actortrain_step_phase_seconds",
            "Seconds each trainer of this node spent per step: compute (the step's own work: forward, backward, bucket copies, optimizer step; everything but waiting for collectives), intra_node (reduce-scatter and all-gather among the node's trainers), cross_node (ring all-reduce with the other nodes), step (the whole step).",
            ["phase"], new HistogramConfiguration { Buckets = PhaseBuckets });
        _compute = phases.WithLabels(Phase.Compute);
        _intraNode = phases.WithLabels(Phase.IntraNode);
        _crossNode = phases.WithLabels(Phase.CrossNode);
        _step = phases.WithLabels(Phase.Step);

        _bytes = factory.CreateCounter("actortrain_transport_bytes_total",
            "Gradient payload bytes this node sent to or received from other nodes, by transport.",
            ["transport", "direction"]);
        _akkaSent = _bytes.WithLabels(TransportLabel.Akka, "sent");
        _akkaReceived = _bytes.WithLabels(TransportLabel.Akka, "received");
        _tcpSent = _bytes.WithLabels(TransportLabel.Tcp, "sent");
        _tcpReceived = _bytes.WithLabels(TransportLabel.Tcp, "received");

        _dropped = factory.CreateCounter("actortrain_dropped_messages_total",
            "Messages from the network this node dropped instead of using them, by reason.",
            ["reason"]);
        foreach (var reason in DropReason.Known) _dropped.WithLabels(reason);

        _straggler = factory.CreateGauge("actortrain_straggler",
            "On the coordinator's node: the rank that holds the others up, as its recent compute time over the other ranks' median (0: no longer).",
            ["straggler_node", "straggler_rank"]);
        _generation = factory.CreateGauge("actortrain_generation",
            "Generation of the world this node trains in (0 before the first).");
        _members = factory.CreateGauge("actortrain_members",
            "Cluster members this node currently sees as up.");
        _worldSize = factory.CreateGauge("actortrain_world_size",
            "Trainers (global ranks) in the current generation of the world.");
        _epoch = factory.CreateGauge("actortrain_epoch",
            "Epoch this node's trainers are in (1-based; 0 before training starts).");
        _stepsCompleted = factory.CreateCounter("actortrain_steps_completed_total",
            "Optimizer steps applied by this node's trainers (each trainer counts its own).");
        _skippedSteps = factory.CreateCounter("actortrain_skipped_steps_total",
            "Steps this node's trainers skipped because some rank's gradient was not finite (each trainer counts its own).");
        _nonFiniteGradients = factory.CreateCounter("actortrain_non_finite_gradients_total",
            "Gradients with NaN or infinity computed by this node's trainers.");

        // Read at each scrape: what a long run needs to show that nothing accumulates, managed or native.
        var resident = factory.CreateGauge("actortrain_process_resident_bytes",
            "Resident set size of this node's process: managed heap, libtorch's native tensors and everything else.");
        var heap = factory.CreateGauge("actortrain_managed_heap_bytes",
            "Bytes of the managed heap in use after the last collection.");
        var collections = factory.CreateGauge("actortrain_gc_collections",
            "Garbage collections of each generation since the process started.", ["generation"]);
        Registry.AddBeforeCollectCallback(() =>
        {
            using var process = System.Diagnostics.Process.GetCurrentProcess();
            resident.Set(process.WorkingSet64);
            heap.Set(GC.GetGCMemoryInfo().HeapSizeBytes);
            for (var generation = 0; generation <= GC.MaxGeneration; generation++)
                collections.WithLabels(generation.ToString(System.Globalization.CultureInfo.InvariantCulture)).Set(GC.CollectionCount(generation));
        });
    }

    public string NodeName { get; }

    /// <summary>This node's own registry: what <see cref="MetricsEndpoint"/> serves.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>
    /// One trainer's step, in milliseconds (recorded in seconds, Prometheus' base unit). A NaN or
    /// infinite phase is left out; a negative one counts as 0.
    /// </summary>
    public void ObserveStep(double computeMs, double intraMs, double crossMs, double stepMs)
    {
        Observe(_compute, computeMs);
        Observe(_intraNode, intraMs);
        Observe(_crossNode, crossMs);
        Observe(_step, stepMs);
    }

    private static void Observe(Histogram.Child phase, double milliseconds)
    {
        if (double.IsFinite(milliseconds)) phase.Observe(Math.Max(0, milliseconds) / 1000.0);
    }

    /// <summary>Adds <paramref name="bytes"/> to <c>actortrain_transport_bytes_total</c>; <paramref name="transport"/> is a <see cref="TransportLabel"/>.</summary>
    public void AddBytes(string transport, bool sent, long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        var counter = transport switch
        {
            TransportLabel.Akka => sent ? _akkaSent : _akkaReceived,
            TransportLabel.Tcp => sent ? _tcpSent : _tcpReceived,
            _ => throw new ArgumentException($"unknown transport \"{transport}\"; expected {TransportLabel.Akka} or {TransportLabel.Tcp}", nameof(transport)),
        };
        counter.Inc(bytes);
    }

    /// <summary>Counts one dropped message; <paramref name="reason"/> is a <see cref="DropReason"/> (a small, fixed set).</summary>
    public void Dropped(string reason, long count = 1)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        if (count > 0) _dropped.WithLabels(reason).Inc(count);
    }

    /// <summary>
    /// The rank that holds the others up, as the coordinator sees it (on the coordinator's node):
    /// its slowdown against the others' median, labelled with its node and rank; 0 for one that
    /// caught up.
    /// </summary>
    public void SetStraggler(string? node, int rank, double ratio)
    {
        foreach (var labels in _straggler.GetAllLabelValues().ToList()) _straggler.WithLabels(labels).Set(0);
        if (node is not null) _straggler.WithLabels(node, rank.ToString(System.Globalization.CultureInfo.InvariantCulture)).Set(ratio);
    }

    public void SetGeneration(long generation) => _generation.Set(generation);
    public void SetMembers(int members) => _members.Set(members);
    public void SetWorldSize(int worldSize) => _worldSize.Set(worldSize);
    public void SetEpoch(int epoch) => _epoch.Set(epoch);
    public void StepCompleted() => _stepsCompleted.Inc();
    public void StepSkipped() => _skippedSteps.Inc();
    public void NonFiniteGradient() => _nonFiniteGradients.Inc();

    /// <summary>The registry in Prometheus' text format, exactly as a scrape of the endpoint returns it.</summary>
    public async Task<string> RenderAsync(CancellationToken cancellationToken = default)
    {
        using var buffer = new MemoryStream();
        await Registry.CollectAndExportAsTextAsync(buffer, cancellationToken).ConfigureAwait(false);
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }
}
