using System.Globalization;

namespace ActorTrain.Cluster.Hosting;

/// <summary>
/// The lines a person running a job reads (registration, generations, epochs, the end of the
/// run), written to standard output whatever akka.loglevel is; diagnostics go to Akka's log.
/// </summary>
public static class ProgressLine
{
    public static void Info(string format, params object?[] args) =>
        Logging.NodeLog.Output(Logging.NodeLog.Progress(string.Format(CultureInfo.InvariantCulture, format, args)), false);
}
