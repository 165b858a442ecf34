using ActorTrain.Cluster.Coordination;
using Akka.Actor;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class RegroupSpec
{
    private static readonly Registration<string>[] Members = new[] { "a", "b", "c", "d" }.Select(n => new Registration<string>(Register(n), n)).ToArray();

    private static RegroupRules Rules(bool hasHistory = true, params string[] suspects) =>
        new(n => n == "d", suspects.Contains, TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(30), hasHistory);

    [Fact]
    public void Regroup_must_wait_for_every_expected_node_but_excuse_suspects_when_asked()
    {
        var round = new RegroupRound();
        round.Begin(2, "node c was lost");
        foreach (var m in Members.Take(3)) round.Expect(m.Name);

        Assert.False(round.Accept(Halted("a", 3, Halt(0, 10))));
        Assert.False(round.Accept(Halted("d", 2, Halt(6, 10))));
        Assert.True(round.Accept(Halted("a", 2, Halt(0, 10))));
        Assert.True(round.Accept(Halted("b", 2, Halt(2, 11))));
        Assert.False(round.Complete);
        Assert.True(round.CompleteBut(n => n == "c"));
        round.Forget("c");
        Assert.True(round.Complete);
        Assert.Equal(11, round.FurthestStep);
    }

    [Fact]
    public void Regroup_must_let_the_leaving_go_leave_out_the_silent_and_go_on_from_the_furthest()
    {
        var round = new RegroupRound();
        round.Begin(2, "node d leaves");
        foreach (var m in Members) round.Expect(m.Name);
        round.Accept(Halted("a", 2, Halt(0, 10), Halt(1, 10)));
        round.Accept(Halted("b", 2, Halt(2, 12), Halt(3, 12)));
        round.Accept(Halted("d", 2, Halt(6, 13), Halt(7, 13)));

        var end = RegroupEnd.Conclude(round, Members, Rules(suspects: "c"));

        Assert.Equal(["d"], end.Leavers.Select(r => r.Name));
        var (silent, why) = Assert.Single(end.LeftOut);
        Assert.Equal("c", silent.Name);
        Assert.Contains("did not answer within 2s", why);
        Assert.Equal(["a", "b"], end.Survivors.Select(r => r.Name));
        Assert.Equal("b:5000", end.Survivors[1].Message.DataPlaneEndpoint);
        Assert.Equal(("b", 12L), (end.Source!.Node, end.Source.Resume.Position.GlobalStep));
        Assert.Null(end.Failure);
        Assert.False(round.HasHalted("d"));
    }

    [Fact]
    public void Regroup_must_fail_when_nobody_holding_the_models_state_is_left()
    {
        var round = new RegroupRound();
        round.Begin(2, "node a was lost");
        round.Expect("b");
        round.Accept(Halted("b", 2, Halt(2, -1)));
        var members = Members.Skip(1).Take(1).ToArray();

        Assert.Contains("no node holding the model's state is left after node a was lost", RegroupEnd.Conclude(round, members, Rules()).Failure);
        Assert.Null(RegroupEnd.Conclude(round, members, Rules(hasHistory: false)).Failure);
        Assert.NotNull(RegroupEnd.Conclude<string>(round, [], Rules()).Failure);
    }

    [Fact]
    public void Electorate_must_hold_quorum_with_a_majority_of_the_voters_that_did_not_depart()
    {
        var voters = new Electorate<string>();
        voters.Elect(Members.Take(3), r => new Address("akka.tcp", "actortrain", r.Name, 4053));
        Assert.Null(voters.Lacking(n => n is "a" or "b"));
        Assert.Contains("no strict majority", voters.Lacking(n => n == "a"));
        voters.Depart("c");
        Assert.Contains("even split", voters.Lacking(n => n == "b"));
        Assert.Null(voters.Lacking(n => n == "a"));
        voters.Leave("b");
        Assert.True(voters.IsLeaving("b"));
        Assert.Equal([new Address("akka.tcp", "actortrain", "c", 4053)], voters.ToDown(n => n == "a", new HashSet<Address>(), new Address("akka.tcp", "actortrain", "seed", 4053)));
        Assert.Equal(["a"], voters.Absent(_ => false).Select(r => r.Name));
        Assert.Empty(voters.Absent(r => r.Name == "a"));
    }

    [Fact]
    public void Electorate_must_know_a_voters_registration_only_from_its_own_sender()
    {
        var voters = new Electorate<string>();
        voters.Elect(Members.Take(2), r => new Address("akka.tcp", "actortrain", r.Name, 4053));
        Assert.NotNull(voters.Registration("a", "a"));
        Assert.Null(voters.Registration("a", "b"));
        Assert.True(voters.IsVoter("b"));
        Assert.False(voters.IsVoter("c"));
    }

    [Fact]
    public void Phase_names_must_be_the_ones_status_has_always_shown()
    {
        Assert.Equal(["waiting-for-nodes", "forming", "training", "regrouping", "finishing", "quorum-lost", "ended"],
            Enum.GetValues<CoordinatorPhase>().Select(p => p.Name()));
    }
}
