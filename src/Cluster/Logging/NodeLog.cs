using System.Globalization;
using Akka.Actor;
using Akka.Dispatch;
using Akka.Event;

namespace ActorTrain.Cluster.Logging;

/// <summary>
/// The one output format of a node process: Akka's log events (through <see cref="NodeLogger"/>)
/// and ActorTrain's progress lines carry the node's name, so lines from several nodes can be
/// told apart wherever they end up. Under the <c>local</c> launcher, which prefixes every line
/// with <c>[nodeI]</c> itself, the name is left out.
/// </summary>
public static class NodeLog
{
    /// <summary>Set by the local launcher for its children: it prefixes their output already.</summary>
    public const string PrefixedByLauncherVariable = "ACTORTRAIN_OUTPUT_PREFIXED";

    private static volatile string _nodeName = "";

    /// <summary>
    /// Where lines go (text, isError). A live progress display replaces it so log lines are
    /// printed above the bar instead of through it.
    /// </summary>
    public static Action<string, bool> Output { get; set; } = WriteToConsole;

    public static void WriteToConsole(string line, bool isError)
    {
        if (isError) Console.Error.WriteLine(line);
        else Console.Out.WriteLine(line);
    }

    public static string NodeName
    {
        get => _nodeName;
        set => _nodeName = value ?? "";
    }

    private static bool IncludeName =>
        _nodeName.Length > 0 && Environment.GetEnvironmentVariable(PrefixedByLauncherVariable) != "1";

    /// <summary>A progress line: <c>node: text</c>.</summary>
    public static string Progress(string text) => IncludeName ? $"{_nodeName}: {text}" : text;

    /// <summary>A log line: <c>time LEVEL node source: text</c>.</summary>
    public static string Log(LogLevel level, DateTime timestamp, string source, string text)
    {
        var name = IncludeName ? _nodeName + " " : "";
        return string.Create(CultureInfo.InvariantCulture, $"{timestamp:HH:mm:ss.fff} {LevelName(level),-5} {name}{source}: {text}");
    }

    private static string LevelName(LogLevel level) => level switch
    {
        LogLevel.DebugLevel => "DEBUG",
        LogLevel.InfoLevel => "INFO",
        LogLevel.WarningLevel => "WARN",
        _ => "ERROR",
    };
}

/// <summary>Akka logger (<c>akka.loggers</c>) that writes events in <see cref="NodeLog"/>'s format to standard error.</summary>
public sealed class NodeLogger : ReceiveActor, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    public NodeLogger()
    {
        Receive<InitializeLogger>(_ => Sender.Tell(new LoggerInitialized()));
        Receive<LogEvent>(Write);
    }

    private static void Write(LogEvent e)
    {
        var text = e.Message?.ToString() ?? "";
        if (e is Error { Cause: { } cause }) text += $" ({cause.GetType().Name}: {cause.Message})";
        var source = ShortSource(e.LogSource);
        NodeLog.Output(NodeLog.Log(e.LogLevel(), e.Timestamp, source, text), true);
    }

    /// <summary>Actor paths are long; the last two segments say enough.</summary>
    private static string ShortSource(string? source)
    {
        if (string.IsNullOrEmpty(source)) return "?";
        var path = source.Split('/', StringSplitOptions.RemoveEmptyEntries);
        return path.Length <= 2 ? source : string.Join('/', path[^2..]);
    }
}
