using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using Akka.Cluster;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// The cluster's members as one node sees them, kept from the membership events: who is up, which
/// seed nodes are up, which members the failure detector marks unreachable, and which left on their
/// own (they no longer count). Decides whether the node still sees the majority of its generation.
/// </summary>
internal sealed class NodeMembership(Address self)
{
    private readonly HashSet<Address> _up = [];
    private readonly HashSet<Address> _seedsUp = [];
    private readonly HashSet<Address> _unreachable = [];
    private readonly HashSet<Address> _departed = [];

    /// <summary>Members up, counted from the events themselves (the cluster's state snapshot can lag behind them).</summary>
    public int UpCount => _up.Count;

    public IReadOnlyCollection<Address> SeedsUp => _seedsUp;

    public void Changed(ClusterEvent.IMemberEvent e)
    {
        if (e is ClusterEvent.MemberUp or ClusterEvent.MemberWeaklyUp) Up(e.Member.Address, e.Member.HasRole(ClusterBootstrap.SeedRole));
        else if (e is ClusterEvent.MemberRemoved) Removed(e.Member.Address);
        else if (e is ClusterEvent.MemberExited or ClusterEvent.MemberLeft) _up.Remove(e.Member.Address);
    }

    public void Up(Address member, bool seed)
    {
        _up.Add(member);
        if (seed) _seedsUp.Add(member);
    }

    /// <summary>A member removed without being unreachable first left (or was taken out by a coordinator that holds quorum): it no longer counts.</summary>
    public void Removed(Address member)
    {
        _up.Remove(member);
        if (!_unreachable.Contains(member)) _departed.Add(member);
    }

    public void Unreachable(Address member) => _unreachable.Add(member);

    public void Reachable(Address member) => _unreachable.Remove(member);

    /// <summary>A seed node is gone (unreachable or removed): it no longer hosts a coordinator.</summary>
    public void SeedGone(Address member) => _seedsUp.Remove(member);

    /// <summary>
    /// Null while this node sees the majority of generation <paramref name="world"/>'s nodes that
    /// have not left (<see cref="Quorum"/>); otherwise why it does not.
    /// </summary>
    public string? QuorumLacking(WorldAssignment world)
    {
        var voters = world.Nodes.Select(n => new Quorum.Voter(n.NodeName, Quorum.AddressOf(n.NodeActorPath) ?? self))
            .Where(v => !_departed.Contains(v.Address)).ToList();
        bool Seen(string name) => voters.First(v => v.Name == name).Address is var a && (a == self || !_unreachable.Contains(a));
        return Quorum.Holds(voters, Seen) ? null : Quorum.Lacking(voters.Count(v => Seen(v.Name)), voters.Count);
    }
}
