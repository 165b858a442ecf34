using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Hosting;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.Hosting;

/// <summary>
/// What the console host adds to a node: a live progress bar on a terminal, the run's plots, the
/// node's lines on standard output (progress, status) and standard error (log lines, warnings,
/// errors), and the end of the process when the node will not shut down.
/// </summary>
internal sealed class ConsoleNodeServices : INodeLineSink
{
    /// <summary>The live bar, once there is one: lines are printed above it instead of through it.</summary>
    private volatile IProgressSink? _live;

    public static NodeHostServices Create()
    {
        var console = new ConsoleNodeServices();
        return new(console.CreateDisplay, DrawPlots, console, Environment.Exit, HostConfig);
    }

    /// <summary>The console host's Akka settings (host.conf), placed just above the library's reference.conf.</summary>
    public static string HostConfig { get; } = ReadHostConfig();

    private static string ReadHostConfig()
    {
        using var stream = typeof(ConsoleNodeServices).Assembly.GetManifestResourceStream("ActorTrain.Hosting.host.conf")
            ?? throw new InvalidOperationException("ActorTrain.Hosting.host.conf is not embedded in ActorTrain.Hosting");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public void Write(NodeLine line)
    {
        if (_live is { } live) live.Report(ProgressEvent.Line(line.Text));
        else if (line.IsDiagnostic) Console.Error.WriteLine(line.Text);
        else Console.Out.WriteLine(line.Text);
    }

    /// <summary>
    /// Protocol lines to the local launcher (which draws the progress of the whole run) when it asks
    /// for them; else a live bar on an interactive terminal, plain lines otherwise.
    /// </summary>
    private IProgressSink CreateDisplay(ActorTrainSettings settings)
    {
        if (Environment.GetEnvironmentVariable(NodeRunner.ProgressProtocolVariable) == "1") return new ProtocolProgressSink(Console.Out);
        var sink = ProgressSinks.ForConsole(noProgress: !settings.ProgressBar);
        if (sink is LiveProgressSink) _live = sink;
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
