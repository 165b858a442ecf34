using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Hosting;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.Hosting;

/// <summary>What the console host adds to a node: a live progress bar on a terminal, and the run's plots.</summary>
internal static class ConsoleNodeServices
{
    public static NodeHostServices Create() => new(CreateDisplay, DrawPlots);

    /// <summary>A live bar on an interactive terminal (log lines are printed above it), plain lines otherwise.</summary>
    private static IProgressSink CreateDisplay(ActorTrainSettings settings)
    {
        var sink = ProgressSinks.ForConsole(noProgress: !settings.ProgressBar);
        if (sink is LiveProgressSink)
            NodeLog.Output = (line, _) => sink.Report(ProgressEvent.Line(line));
        return sink;
    }

    /// <summary>Draws loss.png and a plot per job metric beside run-report.json.</summary>
    private static void DrawPlots(RunReportWritten r)
    {
        try
        {
            var written = RunPlots.Write(r.Directory,
                r.Report.LossCurve.Select(p => new LossPoint(p.Step, p.Loss)).ToList(),
                r.Report.EpochHistory.Select(e => new EpochPoint(e.Epoch, e.EndStep, e.MeanLoss, e.MetricsOrEmpty)).ToList());
            ProgressLine.Info("plots: {0}", string.Join(", ", written));
        }
        catch (Exception e)
        {
            // A plot is a convenience: the run's results are in run-report.json already.
            ProgressLine.Info("could not draw the plots: {0}", e.Message);
        }
    }
}
