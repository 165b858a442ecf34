using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.TrainerActors.Hosting;

/// <summary>
/// What the program hosting a node adds to it: where rank 0's progress goes, what happens on
/// the seed once the run report is written (e.g. drawing plots), where the node's lines for a
/// person go, and what to do when the node will not shut down. Each may be left out: progress
/// then goes as plain lines to standard output, the report is only written, the node's lines go
/// through Akka's logging, and the runner returns the exit code.
/// </summary>
/// <param name="CreateDisplay">Makes the node's progress display from its settings; the node disposes it when it ends.</param>
/// <param name="ReportWritten">Called on the seed, once, after <c>run-report.json</c> is written; exceptions are logged, not thrown.</param>
/// <param name="Output">Where the node's progress lines, warnings, errors and Akka log lines go (<see cref="NodeOutput"/>).</param>
/// <param name="ShutdownOverdue">
/// Called with the run's exit code when the node's ActorSystem did not stop within the shutdown
/// deadline (a thread stuck in native code, a peer that never answers); a console host ends the process here.
/// </param>
/// <param name="HostConfig">
/// HOCON placed just above ActorTrain's reference.conf, below the job's defaults: the Akka
/// settings that belong to the application rather than the library (log level and loggers, the
/// split-brain resolver, coordinated shutdown). The console host passes its host.conf; empty:
/// Akka's own defaults.
/// </param>
public sealed record NodeHostServices(
    Func<ActorTrainSettings, IProgressSink>? CreateDisplay = null,
    Action<RunReportWritten>? ReportWritten = null,
    INodeLineSink? Output = null,
    Action<int>? ShutdownOverdue = null,
    string HostConfig = "")
{
    /// <summary>Plain progress lines and no extra work after the report.</summary>
    public static NodeHostServices Default { get; } = new();
}
