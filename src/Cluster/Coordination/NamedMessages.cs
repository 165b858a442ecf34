using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using Akka.Event;

namespace ActorTrain.Cluster.Coordination;

/// <summary>The messages that speak for a node, which the coordinator takes only from that node's registered actor.</summary>
internal static class NamedMessages
{
    /// <summary>The node a message speaks for; null for a message that names none (or any other).</summary>
    public static string? NodeOf(object message) => message switch
    {
        NodeFailed m => m.NodeName,
        NodeHalted m => m.NodeName,
        NodeReady m => m.NodeName,
        EpochCompleted m => m.NodeName,
        GenerationBroken m => m.NodeName,
        NodeProgress m => m.NodeName,
        NodeFinished m => m.NodeName,
        NonFiniteGradientReported m => m.NodeName,
        _ => null,
    };
}

/// <summary>
/// Keeps out a message that names a node unless it comes from the actor registered under that name (as a
/// member, a joiner, or a voter of the last generation): one from anyone else (a stranger who reached the
/// port, a dropped node's actor) cannot end the run or stand in for a node. It logs the first few it keeps
/// out and then every 100th, so a flood does not flood the log too.
/// </summary>
internal sealed class NamedMessageGate(Admission<IActorRef> admission, Electorate<IActorRef> voters, ILoggingAdapter log)
{
    public long KeptOut { get; private set; }

    /// <summary>True when <paramref name="message"/> from <paramref name="sender"/> is kept out (and no handler should see it).</summary>
    public bool KeepsOut(object message, IActorRef sender)
    {
        var named = NamedMessages.NodeOf(message);
        if (named is null || admission.Find(named, sender) is not null || voters.Registration(named, sender) is not null) return false;
        if (++KeptOut <= 10 || KeptOut % 100 == 0)
            log.Warning("Ignored {0} naming node {1} from {2}, which is not that node's registered actor; {3} ignored so far",
                message.GetType().Name, named, sender.Path, KeptOut);
        return true;
    }
}
