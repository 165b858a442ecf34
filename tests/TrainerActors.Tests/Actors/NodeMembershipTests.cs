using ActorTrain.Cluster.Protocol;
using ActorTrain.TrainerActors.Actors;
using Akka.Actor;
using static ActorTrain.TrainerActors.Tests.Actors.TestWorlds;

namespace ActorTrain.TrainerActors.Tests.Actors;

/// <summary>A node's view of the cluster: who is up, and whether it still sees the majority of its generation.</summary>
public class NodeMembershipTests
{
    private static readonly Address A = At(4001), B = At(4002), C = At(4003);

    [Fact]
    public void A_node_that_sees_two_of_three_holds_the_quorum_and_one_of_three_does_not()
    {
        var members = new NodeMembership(A);
        var world = World(A, B, C);
        members.Unreachable(B);
        Assert.Null(members.QuorumLacking(world));

        members.Unreachable(C);
        Assert.Contains("1 of the 3", members.QuorumLacking(world));

        members.Reachable(C);
        Assert.Null(members.QuorumLacking(world));
    }

    [Fact]
    public void A_member_that_left_on_its_own_no_longer_counts_but_one_removed_while_unreachable_does()
    {
        var left = new NodeMembership(A);
        left.Removed(B);
        left.Unreachable(C);
        // Of A and C, A sees itself only: an even split that goes to the lowest address, A's.
        Assert.Null(left.QuorumLacking(World(A, B, C)));

        var cut = new NodeMembership(A);
        cut.Unreachable(B);
        cut.Removed(B);
        cut.Unreachable(C);
        Assert.Contains("1 of the 3", cut.QuorumLacking(World(A, B, C)));
    }

    [Fact]
    public void Members_and_seed_nodes_up_are_counted_from_the_events()
    {
        var members = new NodeMembership(A);
        members.Up(A, seed: true);
        members.Up(B, seed: false);
        members.Up(C, seed: true);
        Assert.Equal(3, members.UpCount);
        Assert.Equal([A, C], members.SeedsUp.OrderBy(a => a.Port));

        members.SeedGone(C);
        members.Removed(C);
        Assert.Equal(2, members.UpCount);
        Assert.Equal([A], members.SeedsUp);
    }
}
