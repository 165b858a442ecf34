using ActorTrain.Cluster.Protocol;

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
