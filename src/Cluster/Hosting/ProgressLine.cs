using System.Globalization;
using ActorTrain.Cluster.Logging;
using Akka.Actor;

namespace ActorTrain.Cluster.Hosting;

/// <summary>
/// The lines a person running a job reads (registration, generations, epochs, the end of the
/// run), shown whatever akka.loglevel is, through the node's <see cref="NodeOutput"/>; diagnostics go to Akka's log.
/// </summary>
internal static class ProgressLine
{
    /// <summary>From inside an actor: the line goes to its ActorSystem's output.</summary>
    public static void Info(string format, params object?[] args) => NodeOutput.OfCurrentActor.Progress(Format(format, args));

    public static void Info(ActorSystem system, string format, params object?[] args) => NodeOutput.Get(system).Progress(Format(format, args));

    public static string Format(string format, params object?[] args) => string.Format(CultureInfo.InvariantCulture, format, args);
}
