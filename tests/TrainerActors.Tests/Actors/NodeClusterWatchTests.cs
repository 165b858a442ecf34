using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Actors;
using Akka.Actor;
using static ActorTrain.TrainerActors.Tests.Actors.TestWorlds;

namespace ActorTrain.TrainerActors.Tests.Actors;

/// <summary>The cluster-watching side of a node: quorum verdicts and what losing a seed node means.</summary>
public class NodeClusterWatchTests
{
    private static readonly Address A = At(5001), B = At(5002), C = At(5003);

    private static ElasticSettings Elastic(bool enabled = true, QuorumPolicy quorum = QuorumPolicy.Majority) => new()
    {
        Enabled = enabled, RegroupTimeout = TimeSpan.FromSeconds(10), MinSurvivingNodes = 1, HangReportAfter = TimeSpan.FromSeconds(30),
        Quorum = quorum, Rejoin = true, RejoinTimeout = TimeSpan.FromSeconds(60),
    };

    /// <summary>A watch on A that sees A, B and C up, B and C the seed nodes.</summary>
    private static NodeClusterWatch Watch(ElasticSettings? elastic = null)
    {
        var watch = new NodeClusterWatch(A, elastic ?? Elastic());
        watch.Members.Up(A, seed: false);
        watch.Members.Up(B, seed: true);
        watch.Members.Up(C, seed: true);
        return watch;
    }

    private static NodeSeedState Training(WorldAssignment world, Address? coordinator) => new(false, world, coordinator, false, false, false);

    [Fact]
    public void Losing_the_majority_is_reported_once_and_seeing_it_again_once()
    {
        var watch = Watch();
        var world = World(A, B, C);
        watch.Members.Unreachable(B);
        Assert.Equal(QuorumVerdict.Unchanged, watch.CheckQuorum(world, ending: false, out _));

        watch.Members.Unreachable(C);
        Assert.Equal(QuorumVerdict.Lost, watch.CheckQuorum(world, ending: false, out var lacking));
        Assert.Contains("1 of the 3", lacking);
        Assert.True(watch.QuorumLost);
        Assert.Equal(QuorumVerdict.Unchanged, watch.CheckQuorum(world, ending: false, out _));

        watch.Members.Reachable(C);
        Assert.Equal(QuorumVerdict.Regained, watch.CheckQuorum(world, ending: false, out _));
        Assert.False(watch.QuorumLost);
    }

    [Fact]
    public void Without_a_world_while_ending_with_quorum_off_or_elastic_off_the_quorum_is_not_judged()
    {
        var world = World(A, B, C);
        foreach (var (watch, w, ending) in new[]
                 {
                     (Watch(), (WorldAssignment?)null, false), (Watch(), world, true),
                     (Watch(Elastic(quorum: QuorumPolicy.Off)), world, false), (Watch(Elastic(enabled: false)), world, false),
                 })
        {
            watch.Members.Unreachable(B);
            watch.Members.Unreachable(C);
            Assert.Equal(QuorumVerdict.Unchanged, watch.CheckQuorum(w, ending, out _));
            Assert.False(watch.QuorumLost);
        }
    }

    [Fact]
    public void Membership_events_are_applied_and_only_losses_name_a_member()
    {
        var watch = new NodeClusterWatch(A, Elastic());
        Assert.Equal(0, watch.Members.UpCount);
        var unreachable = watch.Apply(new Akka.Cluster.ClusterEvent.UnreachableMember(TestMember(B)));
        Assert.Equal(B, unreachable!.Value.Lost!.Address);
        Assert.Equal("unreachable", unreachable.Value.How);
        var reachable = watch.Apply(new Akka.Cluster.ClusterEvent.ReachableMember(TestMember(B)));
        Assert.NotNull(reachable);
        Assert.Null(reachable.Value.Lost);
    }

    [Fact]
    public void A_lost_seed_that_is_not_the_coordinators_or_no_seed_at_all_is_ignored()
    {
        var watch = Watch();
        var world = World(A, B, C);
        Assert.Equal(SeedLossAction.Ignore, watch.MemberLost(B, seed: false, Training(world, B)));
        Assert.Equal(SeedLossAction.Ignore, watch.MemberLost(C, seed: true, Training(world, B)));
        // C is gone from the seeds all the same.
        Assert.Equal([B], watch.Members.SeedsUp);
        Assert.Equal(SeedLossAction.Ignore, watch.MemberLost(B, seed: true, Training(world, B) with { Ending = true }));
        Assert.Equal(SeedLossAction.Ignore, watch.MemberLost(A, seed: true, Training(world, B)));
    }

    [Fact]
    public void Losing_the_coordinators_seed_during_training_stops_the_trainers_and_registers_again()
    {
        var world = World(A, B, C);
        Assert.Equal(SeedLossAction.HaltThenRegister, Watch().MemberLost(B, seed: true, Training(world, B)));
        Assert.Equal(SeedLossAction.RegisterOnceHalted, Watch().MemberLost(B, seed: true, Training(world, B) with { HaltingBeyondWorld = true }));
        Assert.Equal(SeedLossAction.RegisterNow, Watch().MemberLost(B, seed: true, Training(world, B) with { HaltingBeyondWorld = true, HaltReported = true }));
        Assert.Equal(SeedLossAction.Ignore, Watch().MemberLost(B, seed: true, Training(world, B) with { Rejoining = true }));
        // Stopping with no coordinator known: it registers once the trainers stopped, as decided before.
        Assert.Equal(SeedLossAction.Ignore, Watch().MemberLost(B, seed: true, Training(world, null) with { HaltingBeyondWorld = true }));
    }

    [Fact]
    public void With_no_seed_left_elastic_off_or_before_any_world_the_node_ends_after_a_grace()
    {
        var world = World(A, B, C);
        var lastSeed = Watch();
        lastSeed.MemberLost(C, seed: true, Training(world, B));
        Assert.Equal(SeedLossAction.EndAfterGrace, lastSeed.MemberLost(B, seed: true, Training(world, B)));
        Assert.Equal(SeedLossAction.EndAfterGrace, Watch(Elastic(enabled: false)).MemberLost(B, seed: true, Training(world, B)));
        Assert.Equal(SeedLossAction.EndAfterGrace, Watch().MemberLost(B, seed: true, new NodeSeedState(false, null, B, false, false, false)));
        // Before any world and without a coordinator there is nothing to lose.
        Assert.Equal(SeedLossAction.Ignore, Watch().MemberLost(B, seed: true, new NodeSeedState(false, null, null, false, false, false)));
    }

    [Fact]
    public void A_node_cut_off_from_the_majority_waits_instead_of_acting_on_a_lost_seed()
    {
        var watch = Watch();
        var world = World(A, B, C);
        watch.Members.Unreachable(B);
        watch.Members.Unreachable(C);
        Assert.Equal(QuorumVerdict.Lost, watch.CheckQuorum(world, ending: false, out _));
        Assert.Equal(SeedLossAction.Ignore, watch.MemberLost(B, seed: true, Training(world, B)));
    }

    private static Akka.Cluster.Member TestMember(Address address) =>
        (Akka.Cluster.Member)typeof(Akka.Cluster.Member).GetMethods(System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public)
            .First(m => m.Name == "Create" && m.GetParameters().Length == 3)
            .Invoke(null, [new Akka.Cluster.UniqueAddress(address, 1), System.Collections.Immutable.ImmutableHashSet<string>.Empty, Akka.Util.AppVersion.Zero])!;
}
