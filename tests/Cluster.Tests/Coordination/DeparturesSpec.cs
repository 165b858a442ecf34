using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

/// <summary><see cref="Departures{TNode}"/> on its own: nodes are named by strings, each its own sender.</summary>
public sealed class DeparturesSpec
{
    /// <summary>Members <paramref name="names"/> (the voters of the generation that trains) and what a departure touches.</summary>
    private sealed class Bed
    {
        public readonly Admission<string> Admission = new(JobId, 0, n => n);
        public readonly Electorate<string> Voters = new();
        public readonly EpochCourse Course = new(new RunRecorder());
        public readonly RegroupRound Round = new();
        public readonly Departures<string> Departures;

        public Bed(bool elastic, params string[] names)
        {
            foreach (var name in names) Admission.Admit(Register(name), name);
            Voters.Elect(Admission.Members, r => new Akka.Actor.Address("akka.tcp", "actortrain", r.Name, 4053));
            Departures = new Departures<string>(elastic, Admission, Voters, Course, Round);
        }

        public Consequence Lost(string node, CoordinatorPhase phase, string why = "it became unreachable") =>
            Departures.Lost(r => r.Node == node, why, phase);
    }

    [Fact]
    public void A_lost_node_must_end_a_run_that_is_not_elastic()
    {
        var bed = new Bed(elastic: false, "a", "b");

        var lost = bed.Lost("b", CoordinatorPhase.Training);

        Assert.Equal(Parts(Consequence.EndRun(ExitCodes.NodeLost, "node b was lost (it became unreachable) during training; actortrain.elastic.enabled is off, so the run ends")), Parts(lost));
        Assert.Equal(2, bed.Admission.Members.Count);
    }

    [Fact]
    public void A_lost_member_must_make_the_others_regroup_without_it()
    {
        var bed = new Bed(elastic: true, "a", "b");

        var lost = bed.Lost("b", CoordinatorPhase.Training);

        Assert.Equal((NextStep.Regroup, "node b was lost (it became unreachable)", false), (lost.Step, lost.Why, lost.Graceful));
        Assert.Equal(["node b was lost (it became unreachable); the others regroup without it"], lost.Warnings);
        Assert.Equal(["a"], bed.Admission.Members.Select(m => m.Name));
        Assert.Null(lost.Reply);
    }

    [Fact]
    public void A_gone_joiner_must_only_be_dropped_and_a_stranger_changes_nothing()
    {
        var bed = new Bed(elastic: true, "a", "b");
        bed.Admission.AdmitJoiner(Register("c"), "c");

        var joiner = bed.Lost("c", CoordinatorPhase.Training, "its node actor stopped");
        var stranger = bed.Lost("z", CoordinatorPhase.Training);

        Assert.Equal(NextStep.None, joiner.Step);
        Assert.Equal(["Node c, waiting to join, is gone: its node actor stopped"], joiner.Warnings);
        Assert.Empty(bed.Admission.Joiners);
        Assert.Equal(Parts(Consequence.None), Parts(stranger));
        Assert.Equal(2, bed.Admission.Members.Count);
    }

    [Fact]
    public void A_node_lost_while_the_run_finishes_must_be_left_out_of_the_report()
    {
        var bed = new Bed(elastic: true, "a", "b", "c");
        bed.Course.AwaitFinal(["a", "b", "c"]);
        bed.Course.Finished(new NodeFinished(0, "a", [], null, []));

        var first = bed.Lost("b", CoordinatorPhase.Finishing);
        var last = bed.Lost("c", CoordinatorPhase.Finishing);

        Assert.Equal(NextStep.None, first.Step);
        Assert.Equal(["node b was lost (it became unreachable) while the run was finishing; the report leaves it out"], first.Warnings);
        // a has handed in its final state: without b and c it completes the report.
        Assert.Equal(NextStep.CompleteRun, last.Step);
    }

    [Fact]
    public void A_node_lost_during_a_regroup_must_no_longer_be_waited_for()
    {
        var bed = new Bed(elastic: true, "a", "b");
        bed.Round.Begin(2, "node c leaves");
        bed.Round.Expect("a");
        bed.Round.Expect("b");
        bed.Round.Accept(Halted("a", 2, Halt(0, 10)));

        var lost = bed.Lost("b", CoordinatorPhase.Regrouping);

        Assert.Equal(NextStep.CheckRegroup, lost.Step);
        Assert.Equal(["node b was lost (it became unreachable) during the regroup; it is left out"], lost.Warnings);
        Assert.True(bed.Round.Complete);
    }

    [Fact]
    public void A_broken_collective_must_regroup_and_during_a_regroup_only_a_new_suspect_counts()
    {
        var bed = new Bed(elastic: true, "a", "b");
        var broken = new GenerationBroken(1, "a", "connection reset", "b");

        var training = bed.Departures.Broken(broken, newSuspect: true, CoordinatorPhase.Training);

        Assert.Equal((NextStep.Regroup, "a lost its data-plane connection to b"), (training.Step, training.Why));
        Assert.Equal(["Node a reports generation 1 broken: connection reset"], training.Warnings);
        Assert.Equal("a collective failed on a: connection reset", bed.Departures.Broken(broken with { Suspect = "" }, false, CoordinatorPhase.Forming).Why);
        Assert.Equal(NextStep.CheckRegroup, bed.Departures.Broken(broken, newSuspect: true, CoordinatorPhase.Regrouping).Step);
        Assert.Equal(Consequence.None, bed.Departures.Broken(broken, newSuspect: false, CoordinatorPhase.Regrouping));
        Assert.Equal(NextStep.None, bed.Departures.Broken(broken, newSuspect: true, CoordinatorPhase.Finishing).Step);
        Assert.Equal(2, bed.Admission.Members.Count);
    }

    [Fact]
    public void A_failed_node_must_be_told_it_is_left_out_and_be_lost_or_dropped()
    {
        var bed = new Bed(elastic: true, "a", "b");
        bed.Admission.AdmitJoiner(Register("c"), "c");

        var lost = bed.Departures.Failed("b", "b", "CUDA out of memory", CoordinatorPhase.Training, worldFormed: true);

        Assert.Equal(new EndRun(ExitCodes.NodeFailed, "this node failed and was left out of the run: CUDA out of memory"), lost.Reply);
        Assert.Equal((NextStep.Regroup, "node b was lost (it failed: CUDA out of memory)"), (lost.Step, lost.Why));
        // b stopped on its own: it no longer counts for the quorum.
        Assert.Null(bed.Voters.Lacking(name => name == "a"));

        var before = new Bed(elastic: true, "a");
        var dropped = before.Departures.Failed("a", "a", "no CUDA", CoordinatorPhase.WaitingForNodes, worldFormed: false);
        Assert.Equal((NextStep.None, new EndRun(ExitCodes.NodeFailed, "this node failed and was left out of the run: no CUDA")), (dropped.Step, dropped.Reply));
        Assert.Equal(["Node a failed before training started and is dropped: no CUDA"], dropped.Warnings);
        Assert.Empty(before.Admission.Members);
    }

    [Fact]
    public void A_failed_node_must_end_the_run_outside_an_elastic_run_or_with_no_world_after_the_wait_for_nodes()
    {
        var ends = Parts(Consequence.EndRun(ExitCodes.NodeFailed, "node b failed: boom"));
        Assert.Equal(ends, Parts(new Bed(elastic: false, "a", "b").Departures.Failed("b", "b", "boom", CoordinatorPhase.Training, worldFormed: true)));
        Assert.Equal(ends, Parts(new Bed(elastic: true, "a", "b").Departures.Failed("b", "b", "boom", CoordinatorPhase.QuorumLost, worldFormed: false)));
        // Not the actor that registered b: nothing follows.
        Assert.Equal(Consequence.None, new Bed(elastic: true, "a", "b").Departures.Failed("b", "a", "forged", CoordinatorPhase.Training, worldFormed: true));
    }

    [Fact]
    public void A_leaving_node_must_go_at_once_before_it_trains_and_otherwise_after_the_same_step_as_the_others()
    {
        var bed = new Bed(elastic: true, "a", "b", "c");
        bed.Admission.AdmitJoiner(Register("d"), "d");

        var joiner = bed.Departures.Leaving("d", "d", "SIGTERM", CoordinatorPhase.Training, worldFormed: true);
        Assert.Equal(new EndRun(ExitCodes.Done, "left before it took part in training"), joiner.Reply);
        Assert.Equal(NextStep.None, joiner.Step);
        Assert.Empty(bed.Admission.Joiners);

        var training = bed.Departures.Leaving("b", "b", "SIGTERM", CoordinatorPhase.Training, worldFormed: true);
        Assert.Equal((NextStep.Regroup, "node b leaves (SIGTERM)", true), (training.Step, training.Why, training.Graceful));
        Assert.Equal("Node b is leaving (SIGTERM); the others stop after the same step and go on without it", training.Progress);
        Assert.Null(training.Reply);
        Assert.True(bed.Voters.IsLeaving("b"));

        // Forming: c is left out when the generation that forms has started.
        var forming = bed.Departures.Leaving("c", "c", "SIGTERM", CoordinatorPhase.Forming, worldFormed: true);
        Assert.Equal(NextStep.None, forming.Step);
        var started = bed.Departures.LeftWhileForming();
        Assert.Equal((NextStep.Regroup, "node(s) b, c leave", true), (started.Step, started.Why, started.Graceful));
        Assert.Equal(Consequence.None, bed.Departures.Leaving("c", "c", "SIGTERM", CoordinatorPhase.Ended, worldFormed: true));
    }

    [Fact]
    public void Nothing_must_follow_a_departure_once_the_run_has_ended()
    {
        var bed = new Bed(elastic: true, "a", "b");
        Assert.Equal(Consequence.None, bed.Lost("b", CoordinatorPhase.Ended));
        Assert.Equal(2, bed.Admission.Members.Count);
        Assert.Equal(Consequence.None, new Bed(elastic: true, "a").Departures.LeftWhileForming());
    }

    [Fact]
    public void Nodes_gone_before_training_must_be_dropped_and_a_takeover_must_end_its_regroup_once_the_rest_came_back()
    {
        var bed = new Bed(elastic: true, "a", "b");
        var gone = bed.Admission.RemoveWhere(r => r.Name == "b", joinersToo: true);

        var waiting = bed.Departures.Unregistered(gone, "it left the cluster", recovering: false);
        Assert.Equal(["Node b dropped from registration: it left the cluster"], waiting.Warnings);
        Assert.Equal(NextStep.None, waiting.Step);

        bed.Round.Begin(5, "the coordinator moved to another seed node");
        bed.Round.Expect("a");
        Assert.Equal(NextStep.None, bed.Departures.Unregistered([], "it became unreachable", recovering: true).Step);
        bed.Round.Halted(Halted("a", 5, Halt(0, 30)));
        Assert.Equal(NextStep.FinishRegroup, bed.Departures.Unregistered([], "it became unreachable", recovering: true).Step);
    }
}
