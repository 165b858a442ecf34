using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.TrainerActors.Hosting;

/// <summary>
/// What the program hosting a node adds to it: where rank 0's progress goes, and what happens on
/// the seed once the run report is written (e.g. drawing plots). Either may be left out: progress
/// then goes as plain lines to standard output, and the report is only written.
/// </summary>
/// <param name="CreateDisplay">Makes the node's progress display from its settings; the node disposes it when it ends.</param>
/// <param name="ReportWritten">Called on the seed, once, after <c>run-report.json</c> is written; exceptions are logged, not thrown.</param>
public sealed record NodeHostServices(
    Func<ActorTrainSettings, IProgressSink>? CreateDisplay = null,
    Action<RunReportWritten>? ReportWritten = null)
{
    /// <summary>Plain progress lines and no extra work after the report.</summary>
    public static NodeHostServices Default { get; } = new();
}
