using System.Globalization;
using Akka.Actor;
using Akka.Actor.Internal;
using Akka.Actor.Setup;
using Akka.Event;

namespace ActorTrain.Cluster.Logging;

/// <summary>What a line the node writes for a person is: it decides where a host shows it.</summary>
public enum NodeLineKind
{
    /// <summary>Registration, generations, epochs, the end of the run (standard output on a console).</summary>
    Progress,

    /// <summary>A worker's compact status line (standard output on a console).</summary>
    Status,

    /// <summary>One of Akka's log events, formatted by <see cref="NodeLogger"/> (standard error on a console).</summary>
    Log,

    /// <summary>A warning, <c>warning: …</c> (standard error on a console).</summary>
    Warning,

    /// <summary>An error, <c>error: …</c>, or the exit code the run ended with (standard error on a console).</summary>
    Error,
}

/// <summary>One line for a person, as it is to be shown.</summary>
public readonly record struct NodeLine(NodeLineKind Kind, string Text)
{
    /// <summary>Whether a console shows it on standard error.</summary>
    public bool IsDiagnostic => Kind is NodeLineKind.Log or NodeLineKind.Warning or NodeLineKind.Error;
}

/// <summary>Where the host shows the node's lines (a console, a window, a test's list). Called from any thread.</summary>
public interface INodeLineSink
{
    void Write(NodeLine line);
}

/// <summary>The host's sink for the node's lines, given to the ActorSystem when it is created.</summary>
public sealed class NodeOutputSetup(INodeLineSink sink) : Setup
{
    public INodeLineSink Sink { get; } = sink;
}

/// <summary>
/// The node's lines for a person (progress, warnings, errors, Akka's log events) go to the sink
/// the host gave the ActorSystem (<see cref="NodeOutputSetup"/>); a host that gave none gets them
/// through Akka's logging. Lines carry the node's name, so lines of several nodes can be told
/// apart, except under the <c>local</c> launcher, which prefixes each line with <c>[nodeI]</c> itself.
/// </summary>
internal sealed class NodeOutput : IExtension
{
    private readonly INodeLineSink? _sink;
    private readonly ILoggingAdapter _log;
    private readonly bool _prefixedByLauncher;
    private volatile string _nodeName = "";

    internal NodeOutput(ExtendedActorSystem system)
    {
        var setup = system.Settings.Setup.Get<NodeOutputSetup>();
        _sink = setup.HasValue ? setup.Value.Sink : null;
        _log = Akka.Event.Logging.GetLogger(system, "ActorTrain");
        _prefixedByLauncher = Environment.GetEnvironmentVariable(NodeLog.PrefixedByLauncherVariable) == "1";
    }

    public static NodeOutput Get(ActorSystem system) => system.WithExtension<NodeOutput, NodeOutputProvider>();

    /// <summary>The output of the ActorSystem whose actor is running on this thread.</summary>
    public static NodeOutput OfCurrentActor =>
        InternalCurrentActorCellKeeper.Current?.System is { } system
            ? Get(system)
            : throw new InvalidOperationException("a node line was written outside an actor; pass the ActorSystem (NodeOutput.Get(system))");

    /// <summary>The node's name in its lines; empty until the node knows it.</summary>
    public string NodeName
    {
        get => _nodeName;
        set => _nodeName = value ?? "";
    }

    /// <summary>Whether this host sees the lines through Akka's logging (it gave no sink).</summary>
    public bool ThroughAkkaLogging => _sink is null;

    private bool IncludeName => _nodeName.Length > 0 && !_prefixedByLauncher;

    /// <summary>A progress line: <c>node: text</c>.</summary>
    public void Progress(string text) => Write(NodeLineKind.Progress, IncludeName ? $"{_nodeName}: {text}" : text);

    public void Status(string line) => Write(NodeLineKind.Status, line);

    /// <summary><c>warning: text</c>.</summary>
    public void Warning(string text) => Write(NodeLineKind.Warning, $"warning: {text}");

    /// <summary><c>error: text</c>.</summary>
    public void Error(string text) => Write(NodeLineKind.Error, $"error: {text}");

    /// <summary>A log line: <c>time LEVEL node source: text</c>.</summary>
    public string LogLine(LogLevel level, DateTime timestamp, string source, string text)
    {
        var name = IncludeName ? _nodeName + " " : "";
        return string.Create(CultureInfo.InvariantCulture, $"{timestamp:HH:mm:ss.fff} {LevelName(level),-5} {name}{source}: {text}");
    }

    public void Write(NodeLineKind kind, string text)
    {
        if (_sink is not null)
        {
            _sink.Write(new NodeLine(kind, text));
            return;
        }
        switch (kind)
        {
            case NodeLineKind.Log: break; // An Akka log event already: logging it again would loop.
            case NodeLineKind.Warning: _log.Warning("{0}", text); break;
            case NodeLineKind.Error: _log.Error("{0}", text); break;
            default: _log.Info("{0}", text); break;
        }
    }

    private static string LevelName(LogLevel level) => level switch
    {
        LogLevel.DebugLevel => "DEBUG",
        LogLevel.InfoLevel => "INFO",
        LogLevel.WarningLevel => "WARN",
        _ => "ERROR",
    };
}

internal sealed class NodeOutputProvider : ExtensionIdProvider<NodeOutput>
{
    public override NodeOutput CreateExtension(ExtendedActorSystem system) => new(system);
}
