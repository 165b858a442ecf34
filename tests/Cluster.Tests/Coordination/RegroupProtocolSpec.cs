using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Event;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

/// <summary>
/// <see cref="RegroupProtocol"/> on its own: nodes are probes, its timers are recorded rather than run,
/// and what it tells the nodes is read from the probes.
/// </summary>
public sealed class RegroupProtocolSpec(LocalSystemFixture fixture) : IClassFixture<LocalSystemFixture>
{
    private static readonly Address Self = new("akka.tcp", "actortrain", "seed", 4053);

    /// <summary>A regroup over <paramref name="names"/>, all members and voters of the generation that trained.</summary>
    private sealed class Bed
    {
        public readonly Admission<IActorRef> Admission = new(JobId, 0, n => n.Path.ToString());
        public readonly Electorate<IActorRef> Voters = new();
        public readonly RecordedTimers Timers = new();
        public readonly Dictionary<string, TestProbe> Nodes = [];
        public readonly List<Address> Downed = [];
        public readonly RegroupProtocol Protocol;
        public readonly ILoggingAdapter Log;

        public Bed(ActorSystem system, ElasticSettings elastic, params string[] names)
        {
            Log = Akka.Event.Logging.GetLogger(system, nameof(RegroupProtocolSpec));
            foreach (var name in names)
            {
                Nodes[name] = new TestProbe(system, new XunitAssertions());
                Admission.Admit(Register(name), Nodes[name].Ref);
            }
            Voters.Elect(Admission.Members, RegroupProtocol.VoterAddress);
            Protocol = new RegroupProtocol(elastic, Admission, Voters, Timers);
        }

        public Registration<IActorRef> Member(string name) => Admission.Members.Single(m => m.Name == name);

        public NextGeneration Conclude(bool hasHistory = true) => Protocol.Conclude(hasHistory, Log, Self, Downed.Add);
    }

    [Fact]
    public void Regroup_must_wait_for_every_member_within_the_regroup_timeout()
    {
        var bed = new Bed(fixture.System, Elastic(timeoutSeconds: 8), "a", "b");
        bed.Protocol.Begin(2, "node c was lost");

        Assert.Equal(2, bed.Protocol.For);
        Assert.Equal((new RegroupTimedOut(2), TimeSpan.FromSeconds(8)), bed.Timers.Single["regroup"]);
        Assert.True(bed.Protocol.IsCurrent(new RegroupTimedOut(2)));
        Assert.False(bed.Protocol.IsCurrent(new RegroupTimedOut(1)));
        Assert.False(bed.Protocol.Accept(Halted("a", 3, Halt(0, 10))));
        Assert.True(bed.Protocol.Accept(Halted("a", 2, Halt(0, 10))));
        Assert.False(bed.Protocol.Complete());
        Assert.True(bed.Protocol.Accept(Halted("b", 2, Halt(2, 10))));
        Assert.True(bed.Protocol.Complete());

        Assert.Null(bed.Protocol.Stop());
        Assert.Empty(bed.Timers.Single);
    }

    [Fact]
    public void Suspects_must_be_named_by_others_and_get_a_grace_capped_by_the_regroup_timeout()
    {
        var bed = new Bed(fixture.System, Elastic(timeoutSeconds: 30), "a", "b", "c");
        Assert.True(bed.Protocol.Suspect(new GenerationBroken(1, "a", "connection reset", "b")));
        Assert.False(bed.Protocol.Suspect(new GenerationBroken(1, "c", "connection reset", "b")));
        Assert.False(bed.Protocol.Suspect(new GenerationBroken(1, "c", "connection reset", "c")));
        Assert.False(bed.Protocol.Suspect(new GenerationBroken(1, "c", "deadline", "")));
        Assert.True(bed.Protocol.IsSuspect("b"));
        Assert.False(bed.Protocol.IsSuspect("c"));
        Assert.Equal(TimeSpan.FromSeconds(2), bed.Protocol.SuspectGrace);
        Assert.Equal(TimeSpan.FromMilliseconds(500), new RegroupProtocol(Elastic(timeoutSeconds: 0.5), bed.Admission, bed.Voters, bed.Timers).SuspectGrace);

        bed.Protocol.Begin(2, "b lost its connection");
        bed.Protocol.Accept(Halted("a", 2, Halt(0, 10)));
        Assert.False(bed.Protocol.Complete());
        Assert.False(bed.Timers.Single.ContainsKey("suspect-grace"));

        // Only the suspect is silent: it gets the short grace, not the whole regroup-timeout.
        bed.Protocol.Accept(Halted("c", 2, Halt(4, 10)));
        Assert.False(bed.Protocol.Complete());
        Assert.Equal((new RegroupTimedOut(2), TimeSpan.FromSeconds(2)), bed.Timers.Single["suspect-grace"]);

        Assert.Null(bed.Protocol.Stop());
        Assert.Equal(["a", "c"], bed.Conclude().Nodes.Select(r => r.Name));
        Assert.Contains("its ring neighbour lost the data-plane connection to it, and it did not answer within 2s", bed.Nodes["b"].ExpectMsg<LeftOut>(TestConfig.Timeout).Reason);
        Assert.False(bed.Protocol.IsSuspect("b"));
    }

    [Fact]
    public void Conclusion_must_let_the_leaving_go_leave_out_the_silent_down_lost_voters_and_take_the_joiners()
    {
        var bed = new Bed(fixture.System, Elastic(), "a", "b", "c", "d");
        var joiner = new TestProbe(fixture.System, new XunitAssertions());
        bed.Admission.AdmitJoiner(Register("e"), joiner.Ref);
        bed.Voters.Leave("d");
        bed.Protocol.Begin(2, "node d leaves");
        bed.Protocol.Accept(Halted("a", 2, Halt(0, 10), Halt(1, 10)));
        bed.Protocol.Accept(Halted("b", 2, Halt(2, 12), Halt(3, 12)));
        bed.Protocol.Accept(Halted("d", 2, Halt(6, 13), Halt(7, 13)));
        Assert.Null(bed.Protocol.Stop());

        var next = bed.Conclude();

        Assert.Null(next.Failure);
        Assert.Equal(["a", "b", "e"], next.Nodes.Select(r => r.Name));
        Assert.Equal("b:5000", next.Nodes[1].Message.DataPlaneEndpoint);
        Assert.Equal(("b", 12L), (next.Source!.Node, next.Source.Resume.Position.GlobalStep));
        Assert.Equal(new EndRun(ExitCodes.Done, "left the run after step 12"), bed.Nodes["d"].ExpectMsg<EndRun>(TestConfig.Timeout));
        var leftOut = bed.Nodes["c"].ExpectMsg<LeftOut>(TestConfig.Timeout);
        Assert.Equal(2, leftOut.Generation);
        Assert.Contains("did not stop and report within 8s", leftOut.Reason);
        // c was not kept and did not leave on its own: the cluster drops it. d left, so it is not downed.
        Assert.Equal([new Address("akka.tcp", "actortrain", "c", 4053)], bed.Downed);
        Assert.Empty(bed.Admission.Joiners);
        Assert.Equal(["a", "b"], bed.Admission.Members.Select(m => m.Name));
        bed.Nodes["a"].ExpectNoMsg(TestConfig.Quiet);
    }

    [Fact]
    public void Conclusion_must_fail_without_a_replica_to_go_on_from_or_below_min_surviving_nodes()
    {
        var bed = new Bed(fixture.System, Elastic(minSurviving: 2), "a", "b");
        bed.Protocol.Begin(2, "node b was lost");
        bed.Protocol.Accept(Halted("a", 2, Halt(0, 10)));
        bed.Protocol.Round.Forget("b");
        bed.Admission.RemoveMember(bed.Member("b"));
        var fewer = bed.Conclude();
        Assert.Empty(fewer.Nodes);
        Assert.Null(fewer.Source);
        Assert.Equal("node b was lost: only 1 node(s) remain, fewer than actortrain.elastic.min-surviving-nodes = 2", fewer.Failure);

        var fresh = new Bed(fixture.System, Elastic(), "a");
        fresh.Protocol.Begin(2, "node z was lost");
        fresh.Protocol.Accept(Halted("a", 2, Halt(0, -1)));
        Assert.Contains("no node holding the model's state is left after node z was lost", fresh.Conclude(hasHistory: true).Failure);
    }

    [Fact]
    public void Quorum_must_lack_on_a_minority_side_and_come_back_when_voters_are_seen_again()
    {
        var bed = new Bed(fixture.System, Elastic(), "a", "b", "c");
        bed.Protocol.Begin(2, "nodes b and c are unreachable");
        bed.Protocol.Accept(Halted("a", 2, Halt(0, 10)));
        bed.Protocol.Drop(r => r.Name is "b" or "c", joinersToo: false);
        Assert.True(bed.Protocol.Complete());

        Assert.Contains("sees 1 of the 3 node(s) of the previous generation", bed.Protocol.Stop());
        Assert.False(bed.Protocol.Resume());

        // The network heals for b: it is asked for its state again and counts once it answers.
        bed.Protocol.SeenAgain(1, address => address.Host == "b");
        Assert.Equal(new Regroup(1, 2, false, "the network healed"), bed.Nodes["b"].ExpectMsg<Regroup>(TestConfig.Timeout));
        Assert.Equal(new Regroup(1, 2, false, "the network healed"), bed.Nodes["c"].ExpectMsg<Regroup>(TestConfig.Timeout));
        Assert.False(bed.Protocol.HaltedWhileLacking(Halted("b", 2, Halt(2, 11)), bed.Nodes["c"].Ref));
        Assert.False(bed.Protocol.HaltedWhileLacking(Halted("b", 3, Halt(2, 11)), bed.Nodes["b"].Ref));
        Assert.True(bed.Protocol.HaltedWhileLacking(Halted("b", 2, Halt(2, 11)), bed.Nodes["b"].Ref));
        Assert.True(bed.Admission.IsMember("b"));
        Assert.True(bed.Protocol.Resume());
        Assert.Equal((new RegroupTimedOut(2), TimeSpan.FromSeconds(8)), bed.Timers.Single["regroup"]);
        Assert.False(bed.Protocol.Complete());
    }

    [Fact]
    public void Quorum_must_not_be_checked_when_it_is_off()
    {
        var bed = new Bed(fixture.System, Elastic(QuorumPolicy.Off), "a", "b", "c");
        bed.Protocol.Begin(2, "nodes b and c are unreachable");
        bed.Protocol.Accept(Halted("a", 2, Halt(0, 10)));
        Assert.Null(bed.Protocol.Stop());
    }

    [Fact]
    public void A_voter_back_from_a_partition_must_be_a_member_again_with_its_state()
    {
        var bed = new Bed(fixture.System, Elastic(), "a", "b");
        bed.Protocol.Begin(2, "node b is unreachable");
        bed.Protocol.Accept(Halted("a", 2, Halt(0, 10)));
        var b = bed.Member("b");
        bed.Protocol.Drop(r => r.Name == "b", joinersToo: false);
        Assert.False(bed.Admission.IsMember("b"));

        var back = Register("b") with { Rejoin = Rejoin(1, Halt(2, 12)) };
        bed.Protocol.VoterBack(new Registration<IActorRef>(back, b.Node));

        Assert.True(bed.Admission.IsMember("b"));
        Assert.True(bed.Protocol.Round.HasHalted("b"));
        Assert.True(bed.Protocol.Complete());
        Assert.Equal(12, bed.Protocol.Round.FurthestStep);
    }

    [Fact]
    public void Takeover_must_wait_for_the_last_worlds_nodes_still_up_and_take_their_states()
    {
        var bed = new Bed(fixture.System, Elastic());
        var rejoin = Rejoin(4, Halt(0, 30)) with { World = [WorldNode("a", 0), WorldNode("b", 2), WorldNode("gone", 4)] };
        var up = new HashSet<Address> { new("akka.tcp", "actortrain", "a", 4053), new("akka.tcp", "actortrain", "b", 4053) };

        Assert.Equal(["a", "b"], bed.Protocol.TakeOver(rejoin, up));
        Assert.True(bed.Protocol.Recovering);
        Assert.Equal(5, bed.Protocol.For);
        Assert.Equal("the coordinator moved to another seed node", bed.Protocol.Round.Reason);
        Assert.True(bed.Timers.Single.ContainsKey("regroup"));

        var a = new TestProbe(fixture.System, new XunitAssertions());
        var registration = Register("a") with { Rejoin = rejoin };
        bed.Admission.Admit(registration, a.Ref);
        bed.Protocol.Rejoined(bed.Member("a"), registration);
        Assert.True(bed.Protocol.Round.HasHalted("a"));
        Assert.False(bed.Protocol.Complete());
        Assert.NotNull(bed.Voters.Registration("a", a.Ref));

        // b has not come back yet: one of the last world's three voters is no majority.
        Assert.Contains("sees 1 of the 3 node(s)", bed.Protocol.Stop());
        Assert.False(bed.Protocol.Recovering);
    }
}
