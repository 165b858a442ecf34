using ActorTrain.Cluster;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Metrics;
using ActorTrain.TrainerActors.Reporting;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Actors;
using ActorTrain.TrainerActors.Jobs;
using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using System.Runtime.InteropServices;

namespace ActorTrain.TrainerActors.Hosting;

public enum NodeRole { Seed, Worker }

/// <summary>
/// Runs one node process until the run ends; returns the process exit code (<see cref="ExitCodes"/>). It never
/// ends the process itself: when the node does not shut down in time, it hands the code to the host
/// (<see cref="NodeHostServices.ShutdownOverdue"/>) and returns.
/// </summary>
public static class NodeRunner
{
    /// <summary>Set by the local launcher: end this process when its standard input closes (the launcher died).</summary>
    public const string ExitWithParentVariable = "ACTORTRAIN_EXIT_WITH_PARENT";

    public static int Run(TrainingJob job, NodeRole role, string? configFile, IReadOnlyList<string> overrides, NodeHostServices? services = null)
    {
        services ??= NodeHostServices.Default;
        var (config, settings) = LoadForRole(job, role, configFile, overrides, new ConfigLayers(HostDefaults: services.HostConfig));

        var warmUp = NodeWarmUp.Start(settings.Node.Train, compileAhead: settings.Training.WarmUp, hostsCoordinator: role == NodeRole.Seed);
        var (system, proxy) = StartSystem(config, settings, services);
        NodeWarmUp.ReportTo(warmUp, system);
        var cluster = Akka.Cluster.Cluster.Get(system);
        // With Cluster Bootstrap the cluster forms from discovery instead.
        if (role == NodeRole.Seed && config.GetStringList("akka.cluster.seed-nodes").Count == 0 && !settings.Management.Bootstraps)
            cluster.Join(cluster.SelfAddress);

        if (string.IsNullOrEmpty(settings.NodeName))
            settings = settings with { NodeName = $"{cluster.SelfAddress.Host}:{cluster.SelfAddress.Port}" };
        NodeOutput.Get(system).NodeName = settings.NodeName;
        NodeHealth.Get(system).NodeName = settings.NodeName;
        ProgressLine.Info(system, "{0} node {1} (job \"{2}\")", role.ToString().ToLowerInvariant(), cluster.SelfAddress, settings.JobId);
        var metrics = new NodeMetrics(settings.NodeName);
        using var metricsEndpoint = StartMetrics(settings, metrics, system);
        using var display = services.CreateDisplay?.Invoke(settings) ?? new NodeOutputProgressSink(NodeOutput.Get(system));
        var session = new NodeSession();
        var lifetime = new Lifetime();
        using var cancel = new CancelHandler(lifetime);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            // Leave the run at a step boundary, then the cluster, and say so in the exit code.
            context.Cancel = true;
            lifetime.Drain();
        });
        if (Environment.GetEnvironmentVariable(ExitWithParentVariable) == "1") WatchParent(lifetime);
        var rejoinUntil = DateTime.MaxValue;
        while (true)
        {
            var outcome = new RunOutcome();
            var runEnd = system.ActorOf(Props.Create(() => new RunEndListener(outcome, role == NodeRole.Seed)), "run-end");
            // Subscribed here, before the node actor exists: a node that cannot start publishes EndRun from its constructor,
            // which could run before the listener's own PreStart and be lost (the node then never exited).
            system.EventStream.Subscribe(runEnd, typeof(EndRun));
            system.ActorOf(ControlMessageRefusals.Props(metrics), ControlMessageRefusals.Name);
            if (role == NodeRole.Seed)
            {
                if (services.ReportWritten is { } reportWritten)
                    system.ActorOf(Props.Create(() => new ReportWrittenListener(reportWritten)), "report-written");
                system.ActorOf(Props.Create(() => new StragglerGauge(metrics)), "straggler-metrics");
            }
            var node = settings.Node.Train ? system.ActorOf(NodeActor.Props(settings, job, proxy, metrics, display, session), "node") : null;
            lifetime.Attach(system, outcome, node);
            var output = NodeOutput.Get(system);
            if (Task.WaitAny(system.WhenTerminated, lifetime.Overdue) == 1)
            {
                // The ActorSystem would not stop: the host ends the process with the run's code.
                services.ShutdownOverdue?.Invoke(outcome.ExitCode);
                return outcome.ExitCode;
            }
            // A node Akka.Remote shut down after a failed TLS handshake has a configuration error.
            if (Cluster.Security.NodeTls.ShutDownByFailedHandshake(system))
                outcome.Set(ExitCodes.BadConfiguration, "a TLS handshake with a peer failed, so Akka shut this node down: does this node's certificate " +
                    "(actortrain.tls.certificate-path) chain to the CA the cluster trusts, and does actortrain.tls.ca-certificate-path hold that CA?");
            // Nothing recorded why the system stopped: the cluster removed this node (the split-brain
            // resolver downed it, e.g. after its seed died or its side of a partition lost the majority)
            // before any run outcome.
            var removed = outcome.Set(ExitCodes.NodeLost, session.QuorumLost
                ? "this node's side of the network lost the majority of its generation, and the cluster removed it; it wrote no result"
                : "this node was removed from the cluster before the run ended (its seed or the majority of nodes was lost)");
            var selfAddress = Akka.Cluster.Cluster.Get(system).SelfAddress.ToString();
            var peers = session.Peers.Concat(config.GetStringList("akka.cluster.seed-nodes")).Where(p => p != selfAddress).Distinct().ToList();
            if (rejoinUntil == DateTime.MaxValue) rejoinUntil = DateTime.UtcNow + settings.Elastic.RejoinTimeout;
            if ((removed || session.LeftOut) && CanRejoin(settings, lifetime, peers, rejoinUntil))
            {
                ProgressLine.Info(system, "Node {0}: {1}; rejoining the cluster as a new member through {2} (actortrain.elastic.rejoin = on)",
                    settings.NodeName, outcome.Reason, string.Join(", ", peers));
                config = ConfigurationFactory.ParseString(
                        $"akka.cluster.seed-nodes = [{string.Join(", ", peers.Select(p => $"\"{p}\""))}]\n" +
                        $"actortrain.startup-timeout = {Math.Max(1, (rejoinUntil - DateTime.UtcNow).TotalSeconds):0}s")
                    .WithFallback(config);
                settings = settings with { StartupTimeout = TimeSpan.FromSeconds(Math.Max(1, (rejoinUntil - DateTime.UtcNow).TotalSeconds)) };
                session.LeftOut = false;
                session.QuorumLost = false;
                session.Rejoining = true;
                (system, proxy) = StartSystem(config, settings, services);
                NodeOutput.Get(system).NodeName = settings.NodeName;
                NodeHealth.Get(system).NodeName = settings.NodeName;
                continue;
            }
            if (outcome.ExitCode != ExitCodes.Done)
                output.Write(NodeLineKind.Error, $"run ended with exit code {outcome.ExitCode}: {outcome.Reason}");
            return outcome.ExitCode;
        }
    }

    /// <summary>A node that was left out or removed comes back unless told not to, it was asked to stop, or it has nowhere to go.</summary>
    private static bool CanRejoin(ActorTrainSettings settings, Lifetime lifetime, List<string> peers, DateTime until) =>
        settings.Elastic.Enabled && settings.Elastic.Rejoin && settings.Node.Train && !lifetime.Stopping && peers.Count > 0 && DateTime.UtcNow < until;

    /// <summary>Set by the local launcher for the node it renders the progress bar of (the console host reads it).</summary>
    public const string ProgressProtocolVariable = "ACTORTRAIN_PROGRESS_PROTOCOL";

    /// <summary>The node's ActorSystem; a setting it cannot start with (a management port in use, a certificate) is a usage error.</summary>
    private static (ActorSystem System, Akka.Actor.IActorRef Proxy) StartSystem(Config config, ActorTrainSettings settings, NodeHostServices services)
    {
        try
        {
            return ClusterBootstrap.Start(config, settings, services.Output);
        }
        catch (SettingsException e)
        {
            throw new UsageException(e.Message);
        }
    }

    private static MetricsEndpoint? StartMetrics(ActorTrainSettings settings, NodeMetrics metrics, ActorSystem system)
    {
        if (!settings.Metrics.Enabled) return null;
        try
        {
            var endpoint = MetricsEndpoint.Start(metrics, settings.Metrics.Hostname, settings.Metrics.Port, Cluster.Security.NodeTls.Of(system));
            ProgressLine.Info(system, "metrics at {0}", endpoint.Url);
            return endpoint;
        }
        catch (SettingsException e)
        {
            system.Terminate().Wait(TimeSpan.FromSeconds(10));
            throw new UsageException(e.Message);
        }
    }

    internal static (Config Config, ActorTrainSettings Settings) LoadForRole(TrainingJob job, NodeRole role, string? configFile, IReadOnlyList<string> overrides,
        ConfigLayers? layers = null)
    {
        var lines = overrides.ToList();
        var text = configFile is null ? null : ConfigLoader.ReadFile(configFile);
        var (probe, probeSettings) = ConfigLoader.Load(configFile, text, job.DefaultConfig, job.Name, lines, layers);
        var train = probe.GetBoolean("actortrain.node.train", true);
        // The subcommand decides the roles: the coordinator singleton lives on seed-role nodes.
        var roles = role == NodeRole.Seed
            ? (train ? "[\"seed\", \"trainer\"]" : "[\"seed\"]")
            : "[\"trainer\"]";
        lines.Add($"akka.cluster.roles = {roles}");
        if (role == NodeRole.Worker)
        {
            if (!train) throw new UsageException($"{configFile ?? "command line"}: actortrain.node.train = off makes no sense on a worker");
            if (probe.GetStringList("akka.cluster.seed-nodes").Count == 0 && !probeSettings.Management.Bootstraps)
                throw new UsageException($"{configFile ?? "command line"}: akka.cluster.seed-nodes is empty; a worker needs the seed's address (--seed-node host:port), or a discovery method (actortrain.discovery.method)");
        }
        return ConfigLoader.Load(configFile, text, job.DefaultConfig, job.Name, lines, layers, c => job.Configure(new JobSettings(c)));
    }

    private static void WatchParent(Lifetime lifetime)
    {
        var thread = new Thread(() =>
        {
            try { while (Console.In.Read() >= 0) { } }
            catch (IOException) { }
            lifetime.Stop(ExitCodes.Interrupted, "the launcher went away");
        }) { IsBackground = true, Name = "parent-watch" };
        thread.Start();
    }

    /// <summary>
    /// Leaves the cluster gracefully, but never lingers: a process told to stop exits within
    /// <see cref="ShutdownDeadline"/> even if a peer it waits for is gone.
    /// </summary>
    /// <returns>False when it did not stop within the deadline (the caller gives up on it).</returns>
    private static bool ShutDown(ActorSystem system)
    {
        CoordinatedShutdown.Get(system).Run(CoordinatedShutdown.ClrExitReason.Instance);
        if (system.WhenTerminated.Wait(ShutdownDeadline)) return true;
        NodeOutput.Get(system).Error($"the node did not shut down within {ShutdownDeadline.TotalSeconds:0} s; exiting");
        return false;
    }

    private static readonly TimeSpan ShutdownDeadline = TimeSpan.FromSeconds(30);

    /// <summary>How long a node on SIGTERM waits to leave the run at a step boundary before it shuts down anyway.</summary>
    private static readonly TimeSpan DrainDeadline = TimeSpan.FromSeconds(30);

    /// <summary>The process's current ActorSystem (a new one after a rejoin), for the signals that stop it.</summary>
    private sealed class Lifetime
    {
        private readonly object _gate = new();
        private ActorSystem? _system;
        private RunOutcome _outcome = new();
        private IActorRef? _node;
        private volatile bool _stopping;
        private readonly TaskCompletionSource _overdue = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Completes when the ActorSystem did not shut down within <see cref="ShutdownDeadline"/>.</summary>
        public Task Overdue => _overdue.Task;

        /// <summary>The process was asked to stop: it does not come back as a new member.</summary>
        public bool Stopping => _stopping;

        public void Attach(ActorSystem system, RunOutcome outcome, IActorRef? node)
        {
            lock (_gate) (_system, _outcome, _node) = (system, outcome, node);
        }

        /// <summary>Ctrl+C or the launcher gone: leave the cluster now.</summary>
        public void Stop(int exitCode, string reason)
        {
            _stopping = true;
            var (system, outcome) = Current();
            outcome.Set(exitCode, reason);
            if (system is not null) ShutDownInBackground(system);
        }

        /// <summary>SIGTERM: leave the run at a step boundary (the node actor asks the coordinator), then the cluster.</summary>
        public void Drain()
        {
            _stopping = true;
            var (system, outcome) = Current();
            outcome.Set(ExitCodes.Terminated, "terminated (SIGTERM)");
            if (system is null) return;
            IActorRef? node;
            lock (_gate) node = _node;
            if (node is null)
            {
                ShutDownInBackground(system);
                return;
            }
            node.Tell(DrainNode.Instance);
            Task.Run(async () =>
            {
                if (await Task.WhenAny(system.WhenTerminated, Task.Delay(DrainDeadline)) != system.WhenTerminated)
                {
                    NodeOutput.Get(system).Error($"the node did not leave the run within {DrainDeadline.TotalSeconds:0} s of SIGTERM; shutting down");
                    if (!ShutDown(system)) _overdue.TrySetResult();
                }
            });
        }

        private void ShutDownInBackground(ActorSystem system) => Task.Run(() =>
        {
            if (!ShutDown(system)) _overdue.TrySetResult();
        });

        private (ActorSystem? System, RunOutcome Outcome) Current()
        {
            lock (_gate) return (_system, _outcome);
        }
    }

    /// <summary>Ctrl+C leaves the cluster gracefully; a second Ctrl+C kills the process.</summary>
    private sealed class CancelHandler : IDisposable
    {
        private readonly Lifetime _lifetime;
        private int _presses;

        public CancelHandler(Lifetime lifetime)
        {
            _lifetime = lifetime;
            Console.CancelKeyPress += OnCancel;
        }

        private void OnCancel(object? sender, ConsoleCancelEventArgs e)
        {
            if (Interlocked.Increment(ref _presses) > 1) return;
            e.Cancel = true;
            _lifetime.Stop(ExitCodes.Interrupted, "interrupted");
        }

        public void Dispose() => Console.CancelKeyPress -= OnCancel;
    }
}

/// <summary>On a seed: the straggler the coordinator names (when it runs here) goes into this node's metrics.</summary>
internal sealed class StragglerGauge : ReceiveActor
{
    public StragglerGauge(NodeMetrics metrics)
    {
        Receive<Cluster.Coordination.StragglerChanged>(c => metrics.SetStraggler(c.Current?.Node, c.Current?.Rank ?? -1, c.Current?.Ratio ?? 0));
    }

    protected override void PreStart() => Context.System.EventStream.Subscribe(Self, typeof(Cluster.Coordination.StragglerChanged));
}

/// <summary>On the seed: hands the written run report to the host (<see cref="NodeHostServices.ReportWritten"/>).</summary>
internal sealed class ReportWrittenListener : ReceiveActor
{
    public ReportWrittenListener(Action<RunReportWritten> reportWritten)
    {
        Receive<RunReportWritten>(r =>
        {
            try
            {
                reportWritten(r);
            }
            catch (Exception e)
            {
                // What the host does with the report is extra: the run's results are in run-report.json already.
                ProgressLine.Info("after writing the run report: {0}", e.Message);
            }
        });
    }

    protected override void PreStart() => Context.System.EventStream.Subscribe(Self, typeof(RunReportWritten));
}

/// <summary>How the run ended, for the process exit code. The first reason recorded wins.</summary>
internal sealed class RunOutcome
{
    private int _set;
    public int ExitCode { get; private set; }
    public string Reason { get; private set; } = "";

    /// <returns>True when this call set the outcome (nothing had before).</returns>
    public bool Set(int exitCode, string reason)
    {
        if (Interlocked.Exchange(ref _set, 1) == 1) return false;
        ExitCode = exitCode;
        Reason = reason;
        return true;
    }
}

/// <summary>
/// Listens for the end of the run on this process's event stream (published by the node actor
/// or the coordinator) and leaves the cluster, which shuts the ActorSystem down. A worker leaves
/// at once. The seed, whose coordinator has just sent every node its EndRun, leaves once each
/// other member is leaving, gone or unreachable (so they had it), and after <see cref="SeedWaitCap"/> at most.
/// </summary>
internal sealed class RunEndListener : ReceiveActor, IWithTimers
{
    /// <summary>The longest the seed waits for the other members to leave before it leaves too.</summary>
    public static readonly TimeSpan SeedWaitCap = TimeSpan.FromSeconds(3);

    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);

    public ITimerScheduler Timers { get; set; } = null!;

    public RunEndListener(RunOutcome outcome, bool isSeed)
    {
        Receive<EndRun>(e =>
        {
            outcome.Set(e.ExitCode, e.Reason);
            if (!isSeed)
            {
                Leave();
                return;
            }
            Become(WaitingForOthers);
            Timers.StartSingleTimer("cap", ReceiveTimeout.Instance, SeedWaitCap);
            _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot,
                typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.IReachabilityEvent));
        });
    }

    private void WaitingForOthers()
    {
        Receive<ReceiveTimeout>(_ => Leave());
        ReceiveAny(_ =>
        {
            var state = _cluster.State;
            var othersStaying = state.Members.Any(m => !m.Address.Equals(_cluster.SelfAddress) && !state.Unreachable.Contains(m)
                && m.Status is MemberStatus.Joining or MemberStatus.WeaklyUp or MemberStatus.Up);
            if (!othersStaying) Leave();
        });
    }

    private void Leave()
    {
        CoordinatedShutdown.Get(Context.System).Run(CoordinatedShutdown.ClusterLeavingReason.Instance);
        Become(() => ReceiveAny(_ => { }));
    }

    protected override void PostStop() => _cluster.Unsubscribe(Self);
}

/// <summary>
/// Rank 0's progress where the host has no display: its lines (loss lines, epoch summaries) go to the
/// node's output as they are (<see cref="NodeLineKind.Status"/>); step events show nothing.
/// </summary>
internal sealed class NodeOutputProgressSink(NodeOutput output) : IProgressSink
{
    public void Report(ProgressEvent e)
    {
        if (ProgressKinds.HasLine(e.Kind) && e.Text is not null) output.Write(NodeLineKind.Status, e.Text);
    }

    public void Dispose() { }
}
