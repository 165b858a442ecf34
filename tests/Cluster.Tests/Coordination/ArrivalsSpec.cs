using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

/// <summary><see cref="Arrivals"/> on its own, with min-nodes = 2: nodes are probes, and each registration is decided by <see cref="Admission{TNode}.Decide"/>.</summary>
public sealed class ArrivalsSpec(LocalSystemFixture fixture) : IClassFixture<LocalSystemFixture>
{
    private sealed class Bed
    {
        public readonly Admission<IActorRef> Admission = new(JobId, 0, n => n.Path.ToString());
        public readonly Electorate<IActorRef> Voters = new();
        public readonly RunRecorder Record = new();
        public readonly EpochCourse Course;
        public readonly RegroupProtocol Regroup;
        public readonly Arrivals Arrivals;
        public readonly Dictionary<string, IActorRef> Nodes = [];
        private readonly ActorSystem _system;

        public Bed(ActorSystem system)
        {
            _system = system;
            Course = new EpochCourse(Record);
            Regroup = new RegroupProtocol(Elastic(), Admission, Voters, new RecordedTimers());
            Arrivals = new Arrivals(2, Admission, Regroup, Course);
        }

        public IActorRef Node(string name) =>
            Nodes.TryGetValue(name, out var node) ? node : Nodes[name] = new TestProbe(_system, new XunitAssertions()).Ref;

        public Consequence Register(RegisterNode r, CoordinatorPhase phase, long generation = 1)
        {
            var decision = Admission.Decide(r, Node(r.NodeName), new RunState(phase, true, Regroup.Recovering, generation, Voters.IsVoter));
            return Arrivals.Register(r, Node(r.NodeName), decision, phase);
        }
    }

    [Fact]
    public void A_refusal_must_be_answered_and_logged_unless_it_is_routine()
    {
        var bed = new Bed(fixture.System);
        var node = bed.Node("b");

        var logged = bed.Arrivals.Register(Register("b"), node, AdmissionDecision.Refused("job id differs"), CoordinatorPhase.WaitingForNodes);
        var routine = bed.Register(Register("b"), CoordinatorPhase.Ended);

        Assert.Equal(new RegistrationRefused("job id differs"), logged.Reply);
        Assert.Equal([$"Refused node b at {node.Path.Address}: job id differs"], logged.Warnings);
        Assert.False(logged.Watch);
        Assert.Equal(new RegistrationRefused("the run has ended"), routine.Reply);
        Assert.Empty(routine.Warnings);
        Assert.Empty(bed.Admission.All);
    }

    [Fact]
    public void Members_must_be_watched_once_and_start_the_run_at_min_nodes()
    {
        var bed = new Bed(fixture.System);

        var first = bed.Register(Register("a"), CoordinatorPhase.WaitingForNodes);
        var again = bed.Register(Register("a"), CoordinatorPhase.WaitingForNodes);
        var second = bed.Register(Register("b"), CoordinatorPhase.WaitingForNodes);

        Assert.Equal((true, NextStep.None, new NodeRegistered("a", 1, 2)), (first.Watch, first.Step, first.Reply));
        Assert.Equal("Node a registered (2 trainer(s) on cpu,cpu); 1/2 node(s)", first.Progress);
        Assert.Equal((false, NextStep.None, new NodeRegistered("a", 1, 2), (string?)null), (again.Watch, again.Step, again.Reply, again.Progress));
        Assert.Equal((true, NextStep.StartRun, new NodeRegistered("b", 2, 2)), (second.Watch, second.Step, second.Reply));
    }

    [Fact]
    public void A_retry_must_be_answered_again_and_a_joiner_must_regroup_only_a_generation_that_trains()
    {
        var bed = new Bed(fixture.System);
        bed.Register(Register("a"), CoordinatorPhase.WaitingForNodes);
        bed.Register(Register("b"), CoordinatorPhase.WaitingForNodes);

        var retry = bed.Register(Register("a"), CoordinatorPhase.Training);
        var training = bed.Register(Register("c"), CoordinatorPhase.Training);
        var forming = bed.Register(Register("d"), CoordinatorPhase.Forming);

        Assert.Equal(Consequence.None with { Reply = new NodeRegistered("a", 2, 2) }, retry);
        Assert.Equal((NextStep.Regroup, "node c joins", true), (training.Step, training.Why, training.Graceful));
        Assert.Equal((true, new NodeRegistered("c", 3, 2)), (training.Watch, training.Reply));
        Assert.Equal("Node c registered mid-run (2 trainer(s) on cpu,cpu); it joins at the next step boundary", training.Progress);
        // Forming: d enters with the generation after the one that forms.
        Assert.Equal((NextStep.None, new NodeRegistered("d", 4, 2)), (forming.Step, forming.Reply));
        Assert.Equal(["c", "d"], bed.Admission.Joiners.Select(j => j.Name));
    }

    [Fact]
    public void A_voter_back_while_the_quorum_is_lacking_must_count_again()
    {
        var bed = new Bed(fixture.System);
        bed.Register(Register("a"), CoordinatorPhase.WaitingForNodes);
        bed.Register(Register("b"), CoordinatorPhase.WaitingForNodes);
        bed.Voters.Elect(bed.Admission.Members, RegroupProtocol.VoterAddress);
        bed.Regroup.Begin(2, "node b is unreachable");
        bed.Regroup.Drop(r => r.Name == "b", joinersToo: false);

        var back = bed.Register(Register("b") with { Rejoin = Rejoin(1, Halt(2, 12)) }, CoordinatorPhase.QuorumLost);

        Assert.Equal((true, NextStep.ResumeRegroup, new NodeRegistered("b", 2, 2)), (back.Watch, back.Step, back.Reply));
        Assert.True(bed.Admission.IsMember("b"));
        Assert.True(bed.Regroup.Round.HasHalted("b"));
    }

    [Fact]
    public void A_node_of_a_lost_coordinators_world_must_bring_its_state_and_history_and_end_the_regroup_once_all_are_back()
    {
        var bed = new Bed(fixture.System);
        var history = new RunHistory([new GenerationRecord(1, ["a", "b"], 4, 0, "start", 0, 0)], [], 12);
        var rejoin = Rejoin(1, Halt(0, 30)) with { World = [WorldNode("a", 0), WorldNode("b", 2)], History = history };
        bed.Course.TakeOver(rejoin);
        bed.Regroup.TakeOver(rejoin, new HashSet<Address> { new("akka.tcp", "actortrain", "a", 4053), new("akka.tcp", "actortrain", "b", 4053) });

        var a = bed.Register(Register("a") with { Rejoin = rejoin }, CoordinatorPhase.WaitingForNodes);
        var b = bed.Register(Register("b") with { Rejoin = rejoin with { Trainers = [Halt(2, 30)] } }, CoordinatorPhase.WaitingForNodes);

        Assert.Equal((true, NextStep.None, new NodeRegistered("a", 1, 2)), (a.Watch, a.Step, a.Reply));
        Assert.Equal((true, NextStep.FinishRegroup, new NodeRegistered("b", 2, 2)), (b.Watch, b.Step, b.Reply));
        // The history they bring is kept: this coordinator goes on with it.
        Assert.Equal(history.Generations, bed.Record.Generations);
    }
}
