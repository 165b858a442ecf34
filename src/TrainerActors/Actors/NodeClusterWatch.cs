using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Cluster;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>What a node does about a change of its quorum.</summary>
internal enum QuorumVerdict
{
    Unchanged,

    /// <summary>It no longer sees the majority of its generation: stop at once, train no further.</summary>
    Lost,

    /// <summary>It sees the majority again: wait for the coordinator.</summary>
    Regained,
}

/// <summary>What a node does when it loses a seed node.</summary>
internal enum SeedLossAction
{
    /// <summary>Not its coordinator's seed, or nothing it can do (no quorum, rejoining already, …).</summary>
    Ignore,

    /// <summary>Nobody is left to form the world or end the run: end after a short grace (<see cref="NodeClusterWatch.SeedLostGrace"/>).</summary>
    EndAfterGrace,

    /// <summary>Stop the trainers (the step in flight is dropped), then register with the coordinator that takes over.</summary>
    HaltThenRegister,

    /// <summary>The trainers are stopping for a regroup already: register once they have.</summary>
    RegisterOnceHalted,

    /// <summary>The trainers stopped and reported already: register now with the state they stopped in.</summary>
    RegisterNow,
}

/// <summary>A membership change the node checks its quorum after; <paramref name="Lost"/>: a member it lost, and <paramref name="How"/>.</summary>
internal readonly record struct MembershipChange(Member? Lost, string How);

/// <summary>The node's own state a seed loss is judged by.</summary>
/// <param name="Ending">The node is ending already.</param>
/// <param name="World">The generation it trains, if any.</param>
/// <param name="Coordinator">Where its coordinator runs; null when it knows of none.</param>
/// <param name="Rejoining">It is registering with a coordinator that took over already.</param>
/// <param name="HaltingBeyondWorld">Its trainers are stopping (or stopped) for a generation after <paramref name="World"/>.</param>
/// <param name="HaltReported">They stopped, and the node reported their state to the coordinator.</param>
internal readonly record struct NodeSeedState(bool Ending, WorldAssignment? World, Address? Coordinator, bool Rejoining, bool HaltingBeyondWorld, bool HaltReported);

/// <summary>
/// The cluster-watching side of a node: the members it sees (<see cref="NodeMembership"/>),
/// whether it holds the quorum of its generation, and what losing a seed node means for it.
/// Decisions only: the node actor acts on them.
/// </summary>
internal sealed class NodeClusterWatch(Address self, ElasticSettings elastic)
{
    /// <summary>How long a node that lost its only seed waits for the rest of the failure detector's news before it ends.</summary>
    public static readonly TimeSpan SeedLostGrace = TimeSpan.FromSeconds(2);

    /// <summary>The membership events <see cref="Apply"/> takes in.</summary>
    public static readonly Type[] Events = [typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.UnreachableMember), typeof(ClusterEvent.ReachableMember)];

    public NodeMembership Members { get; } = new(self);

    /// <summary>Whether the node is cut off from the majority of its generation (reset by a new world).</summary>
    public bool QuorumLost { get; set; }

    /// <summary>
    /// Takes in a membership event. Null when it changes nothing the node acts on; otherwise the
    /// node checks its quorum, and when <see cref="MembershipChange.Lost"/> is set, what losing that member means.
    /// </summary>
    public MembershipChange? Apply(ClusterEvent.IClusterDomainEvent e)
    {
        switch (e)
        {
            case ClusterEvent.UnreachableMember m:
                Members.Unreachable(m.Member.Address);
                return new MembershipChange(m.Member, "unreachable");
            case ClusterEvent.ReachableMember m:
                Members.Reachable(m.Member.Address);
                return new MembershipChange(null, "");
            case ClusterEvent.IMemberEvent m:
                Members.Changed(m);
                return m is ClusterEvent.MemberRemoved ? new MembershipChange(m.Member, "removed") : null;
            default:
                return null;
        }
    }

    /// <summary>
    /// Whether the node still sees the majority of its generation (<see cref="Quorum"/>) after a
    /// membership change; <paramref name="lacking"/> says what it misses when it lost it.
    /// </summary>
    public QuorumVerdict CheckQuorum(WorldAssignment? world, bool ending, out string? lacking)
    {
        lacking = null;
        if (world is null || ending || !elastic.Enabled || elastic.Quorum == QuorumPolicy.Off) return QuorumVerdict.Unchanged;
        lacking = Members.QuorumLacking(world);
        var lost = lacking is not null;
        if (lost == QuorumLost) return QuorumVerdict.Unchanged;
        QuorumLost = lost;
        return lost ? QuorumVerdict.Lost : QuorumVerdict.Regained;
    }

    /// <summary>A member became unreachable or was removed: what the node does if it was the seed its coordinator ran on.</summary>
    public SeedLossAction MemberLost(Member member, NodeSeedState node) => MemberLost(member.Address, member.HasRole(ClusterBootstrap.SeedRole), node);

    /// <inheritdoc cref="MemberLost(Member, NodeSeedState)"/>
    public SeedLossAction MemberLost(Address member, bool seed, NodeSeedState node)
    {
        if (node.Ending || member == self || !seed) return SeedLossAction.Ignore;
        Members.SeedGone(member);
        // Cut off from the majority: nothing to do but wait (the network heals, or the cluster removes this node).
        if (QuorumLost) return SeedLossAction.Ignore;
        if (node.World is null && node.Coordinator is null) return SeedLossAction.Ignore;
        if (node.Coordinator is { } coordinator && coordinator != member) return SeedLossAction.Ignore;
        // Without a seed node nobody forms the world or ends the run: stop rather than wait
        // forever. Not at once: the failure detector reports the members it lost one event at
        // a time, and if this node turns out to be the one cut off (no quorum), it waits instead.
        if (Members.SeedsUp.Count == 0 || !elastic.Enabled || node.World is null) return SeedLossAction.EndAfterGrace;
        if (node.Rejoining || node.HaltingBeyondWorld && node.Coordinator is null) return SeedLossAction.Ignore;
        // The coordinator singleton moves to another seed node once this one is removed: the node
        // registers again with what its trainers hold, so the new coordinator goes on from it.
        if (!node.HaltingBeyondWorld) return SeedLossAction.HaltThenRegister;
        return node.HaltReported ? SeedLossAction.RegisterNow : SeedLossAction.RegisterOnceHalted;
    }
}
