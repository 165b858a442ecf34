namespace ActorTrain.TrainerActors.Hosting;

/// <summary>
/// What a node process carries from one ActorSystem to the next when it comes back as a new
/// member (actortrain.elastic.rejoin): written by the node actor, read by <see cref="NodeRunner"/>
/// once the system has stopped.
/// </summary>
internal sealed class NodeSession
{
    private volatile string[] _peers = [];

    /// <summary>The Akka addresses of the last generation's nodes: where a rejoin looks for the cluster.</summary>
    public string[] Peers { get => _peers; set => _peers = value; }

    /// <summary>The coordinator left this node out of a generation (alive, but too late or cut off).</summary>
    public volatile bool LeftOut;

    /// <summary>This node stopped because its side of the network lost the majority of its generation.</summary>
    public volatile bool QuorumLost;

    /// <summary>This ActorSystem is a rejoin attempt: a registration nobody answers ends it with exit 3.</summary>
    public volatile bool Rejoining;
}
