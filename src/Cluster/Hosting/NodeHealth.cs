using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using Akka.Cluster;

namespace ActorTrain.Cluster.Hosting;

/// <summary>One health verdict: whether the check passes, and a line for a person.</summary>
internal sealed record HealthVerdict(bool Healthy, string Reason);

/// <summary>
/// What the health checks of a node know about it: set by <see cref="ClusterBootstrap.Start"/>
/// (the coordinator proxy, whether the node trains) and by the node runner (its name).
/// </summary>
internal sealed class NodeHealth : IExtension
{
    private readonly ActorSystem _system;
    private volatile IActorRef? _coordinator;
    private volatile string _nodeName = "";
    private volatile bool _trains = true;

    public NodeHealth(ActorSystem system) => _system = system;

    public static NodeHealth Get(ActorSystem system) => system.WithExtension<NodeHealth, NodeHealthProvider>();

    public void Attach(IActorRef coordinatorProxy, bool trains)
    {
        _coordinator = coordinatorProxy;
        _trains = trains;
    }

    /// <summary>The node's name as it registers with the coordinator.</summary>
    public string NodeName { get => _nodeName; set => _nodeName = value; }

    /// <summary>Liveness: the actor system is up.</summary>
    public HealthVerdict Liveness() => _system.WhenTerminated.IsCompleted
        ? new(false, "the actor system has stopped")
        : new(true, $"alive: actor system {_system.Name} is up");

    /// <summary>Readiness: joined, and holding a place in the coordinator's current generation.</summary>
    public async Task<HealthVerdict> ReadinessAsync(TimeSpan timeout)
    {
        if (_system.WhenTerminated.IsCompleted) return new(false, "the actor system has stopped");
        var cluster = Akka.Cluster.Cluster.Get(_system);
        var self = cluster.State.Members.FirstOrDefault(m => m.UniqueAddress.Equals(cluster.SelfUniqueAddress));
        ClusterStatus? status = null;
        if (self?.Status == MemberStatus.Up && _coordinator is { } coordinator)
        {
            try
            {
                status = await coordinator.Ask<ClusterStatus>(new GetStatus(Guid.NewGuid().ToString("N")), timeout).ConfigureAwait(false);
            }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
            {
                status = null;
            }
        }
        return Judge(self?.Status, status, _nodeName, cluster.SelfAddress.ToString(), _trains);
    }

    /// <summary>The readiness verdict from the node's membership and the coordinator's status (null: no answer).</summary>
    public static HealthVerdict Judge(MemberStatus? member, ClusterStatus? status, string nodeName, string selfAddress, bool trains)
    {
        switch (member)
        {
            case null or MemberStatus.Joining or MemberStatus.WeaklyUp:
                return new(false, $"not ready: not a member of the cluster yet ({(member is null ? "looking for it" : member.ToString()!.ToLowerInvariant())})");
            case MemberStatus.Leaving or MemberStatus.Exiting or MemberStatus.Down or MemberStatus.Removed:
                return new(false, $"not ready: leaving the cluster ({member.ToString()!.ToLowerInvariant()})");
        }
        if (status is null) return new(false, "not ready: joined the cluster, but the coordinator does not answer yet");
        if (!trains) return new(true, $"ready: the coordinator runs ({status.Phase}, generation {status.Generation})");
        var mine = status.Nodes.FirstOrDefault(n => n.NodeName == nodeName || n.Address == selfAddress);
        if (mine is null)
            return new(false, status.WorldSize > 0
                ? $"not ready: waiting to be admitted; the run is {status.Phase} in generation {status.Generation} and this node joins at the next step boundary"
                : $"not ready: not registered with the coordinator yet ({status.RegisteredNodes} of {status.MinNodes} node(s) registered)");
        if (mine.FirstRank < 0)
            return new(false, $"not ready: registered, waiting for the first generation ({status.RegisteredNodes} of {status.MinNodes} node(s))");
        return new(true, $"ready: ranks {mine.FirstRank}..{mine.FirstRank + mine.TrainerCount - 1} of generation {status.Generation} ({status.Phase}, world size {status.WorldSize})");
    }
}

internal sealed class NodeHealthProvider : ExtensionIdProvider<NodeHealth>
{
    public override NodeHealth CreateExtension(ExtendedActorSystem system) => new(system);
}
