using ActorTrain.Cluster;
using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using Akka.Event;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// How a node ends: once, releasing its trainers, with an <see cref="EndRun"/> on its own event
/// stream (the runner shuts the node down on it); a failure first tells the coordinator, which
/// answers with the run's end, and ends on its own after <see cref="FailGrace"/> if it cannot.
/// </summary>
internal sealed class NodeEnding(ActorSystem system, NodeOutput output, NodeCancellation cancel, ILoggingAdapter log)
{
    /// <summary>How long a failed node waits for the coordinator's <see cref="EndRun"/>.</summary>
    public static readonly TimeSpan FailGrace = TimeSpan.FromSeconds(15);

    public bool Ending { get; private set; }

    /// <summary>Says why on the error output, then ends the node.</summary>
    public void With(NodeEnd end)
    {
        output.Error(end.Line);
        Locally(end.ExitCode, end.Reason);
    }

    public void Locally(int exitCode, string reason)
    {
        if (Ending) return;
        Ending = true;
        cancel.CancelRun();
        system.EventStream.Publish(new EndRun(exitCode, reason));
    }

    /// <summary>
    /// The node cannot go on: says why, releases its trainers, and arranges its own end should the
    /// coordinator not answer. False when it is ending already (nothing to tell the coordinator).
    /// </summary>
    public bool Fail(string nodeName, string reason, ITimerScheduler timers)
    {
        if (Ending) return false;
        log.Error("Node {0} cannot go on: {1}", nodeName, reason);
        output.Error($"node {nodeName}: {reason}");
        cancel.CancelRun();
        timers.StartSingleTimer("fail-exit", new EndRun(ExitCodes.NodeFailed, reason), FailGrace);
        return true;
    }
}
