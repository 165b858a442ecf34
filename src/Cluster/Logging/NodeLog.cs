using Akka.Actor;
using Akka.Dispatch;
using Akka.Event;

namespace ActorTrain.Cluster.Logging;

/// <summary>Names shared by a node process and the launcher that starts it.</summary>
internal static class NodeLog
{
    /// <summary>Set by the local launcher for its children: it prefixes their output already.</summary>
    public const string PrefixedByLauncherVariable = "ACTORTRAIN_OUTPUT_PREFIXED";
}

/// <summary>
/// Akka logger (<c>akka.loggers</c>) that writes events as <see cref="NodeLineKind.Log"/> lines
/// (<c>time LEVEL node source: text</c>) to the node's output (<see cref="NodeOutput"/>). A host
/// that gave the node no sink gets them on Akka's standard-out writer.
/// </summary>
public sealed class NodeLogger : ReceiveActor, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    public NodeLogger()
    {
        var output = NodeOutput.Get(Context.System);
        Receive<InitializeLogger>(_ => Sender.Tell(new LoggerInitialized()));
        var debug = Context.System.Settings.LogLevel.Equals("DEBUG", StringComparison.OrdinalIgnoreCase);
        Receive<LogEvent>(e =>
        {
            if (debug || !IsShutdownNoise(e)) Write(output, e);
        });
    }

    /// <summary>
    /// Akka.Remote's warning when both ends of a connection close it at once, as when the nodes of a
    /// finished run leave together: nothing is lost, so it is shown at DEBUG only.
    /// </summary>
    public static bool IsShutdownNoise(LogEvent e) =>
        e is Warning && e.LogSource is { } source && (source.Contains("TcpClientHandler") || source.Contains("TcpServerHandler"))
        && e.Message?.ToString()?.StartsWith("Unable to REMOVE channel", StringComparison.Ordinal) == true;

    private static void Write(NodeOutput output, LogEvent e)
    {
        var text = e.Message?.ToString() ?? "";
        if (e is Error { Cause: { } cause }) text += $" ({cause.GetType().Name}: {cause.Message})";
        var line = output.LogLine(e.LogLevel(), e.Timestamp, ShortSource(e.LogSource), text);
        if (output.ThroughAkkaLogging) Akka.Util.StandardOutWriter.WriteLine(line);
        else output.Write(NodeLineKind.Log, line);
    }

    /// <summary>Actor paths are long; the last two segments say enough.</summary>
    private static string ShortSource(string? source)
    {
        if (string.IsNullOrEmpty(source)) return "?";
        var path = source.Split('/', StringSplitOptions.RemoveEmptyEntries);
        return path.Length <= 2 ? source : string.Join('/', path[^2..]);
    }
}
