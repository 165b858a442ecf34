using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class AdmissionSpec
{
    private static Admission<string> NewAdmission(int maxNodes = 0) => new(JobId, maxNodes, node => $"sender {node}");

    [Fact]
    public void Admission_must_refuse_another_job_protocol_model_or_trainer_count_naming_what_differs()
    {
        var admission = NewAdmission();
        Assert.NotNull(admission.Admit(Register("a"), "a"));

        Assert.Contains("job-b", admission.Refusal(Register("b") with { JobId = "job-b" }, "b"));
        Assert.Contains("protocol version", admission.Refusal(Register("b") with { ProtocolVersion = ActorTrainSettings.ProtocolVersion + 1 }, "b"));
        Assert.Contains("fingerprint", admission.Refusal(Register("b", fingerprint: "fp-2"), "b"));
        Assert.Contains("3 trainer(s) per node", admission.Refusal(Register("b", trainers: 3), "b"));
        Assert.Contains("at least one trainer", admission.Refusal(Register("b", trainers: 0), "b"));
        Assert.Null(admission.Refusal(Register("b"), "b"));
    }

    [Fact]
    public void Admission_must_refuse_a_node_whose_job_settings_differ_and_forget_them_once_nobody_is_registered()
    {
        var admission = NewAdmission();
        admission.Admit(Register("a") with { JobSettingsDigest = "d-1" }, "a");

        Assert.Contains("job settings (actortrain.job, digest d-2) differ from the registered nodes' (d-1)",
            admission.Refusal(Register("b") with { JobSettingsDigest = "d-2" }, "b"));
        Assert.Contains("digest none set", admission.Refusal(Register("b"), "b"));
        Assert.Null(admission.Refusal(Register("b") with { JobSettingsDigest = "d-1" }, "b"));

        admission.RemoveWhere(r => r.Name == "a", joinersToo: true);
        admission.ForgetModelIfEmpty();
        Assert.Null(admission.Refusal(Register("b") with { JobSettingsDigest = "d-2" }, "b"));
    }

    [Fact]
    public void Admission_must_keep_a_name_for_the_sender_that_registered_it()
    {
        var admission = NewAdmission();
        admission.Admit(Register("a"), "first");

        Assert.Equal("node name \"a\" is already taken by sender first; give each node its own actortrain.node-name", admission.Refusal(Register("a"), "second"));
        Assert.Null(admission.Refusal(Register("a"), "first"));
        Assert.Null(admission.Admit(Register("a"), "first"));
        Assert.Single(admission.Members);
        Assert.NotNull(admission.Find("a", "first"));
        Assert.Null(admission.Find("a", "second"));
    }

    [Fact]
    public void Admission_must_forget_the_model_once_nobody_is_registered()
    {
        var admission = NewAdmission();
        admission.Admit(Register("a"), "a");
        Assert.NotNull(admission.Refusal(Register("b", fingerprint: "fp-2"), "b"));

        Assert.Single(admission.RemoveWhere(r => r.Name == "a", joinersToo: true));
        admission.ForgetModelIfEmpty();

        Assert.Null(admission.Refusal(Register("b", fingerprint: "fp-2", trainers: 4), "b"));
    }

    [Fact]
    public void Admission_must_refuse_joiners_beyond_max_nodes_and_hand_them_over_once()
    {
        var admission = NewAdmission(maxNodes: 3);
        admission.Admit(Register("a"), "a");
        admission.Admit(Register("b"), "b");
        Assert.Null(admission.JoinRefusal());
        admission.AdmitJoiner(Register("c"), "c");

        Assert.Contains("actortrain.max-nodes = 3", admission.JoinRefusal());
        Assert.Equal(["c"], admission.TakeJoiners().Select(r => r.Name));
        Assert.Empty(admission.Joiners);
        Assert.Null(admission.JoinRefusal());
    }

    [Fact]
    public void Admission_must_rank_local_nodes_first_and_find_the_source_replicas_global_rank()
    {
        var admission = NewAdmission();
        var a = admission.Admit(Register("a"), "remote-a")!;
        var b = admission.Admit(Register("b"), "local-b")!;
        var c = admission.Admit(Register("c"), "remote-c")!;

        var ranked = admission.Rank([a, b, c], node => node.StartsWith("local", StringComparison.Ordinal), sourceNode: "c", sourceLocalRank: 1);

        Assert.Equal(["b", "a", "c"], ranked.Nodes.Select(n => n.NodeName));
        Assert.Equal([0, 2, 4], ranked.Nodes.Select(n => n.FirstRank));
        Assert.Equal(6, ranked.WorldSize);
        Assert.Equal(5, ranked.SourceRank);
        Assert.Equal(["b", "a", "c"], admission.Members.Select(m => m.Name));
    }

    [Fact]
    public void Admission_must_make_rank_zero_the_source_when_none_is_named()
    {
        var admission = NewAdmission();
        var a = admission.Admit(Register("a"), "a")!;
        Assert.Equal(0, admission.Rank([a], _ => false, sourceNode: null, sourceLocalRank: 0).SourceRank);
    }

    private static RunState Run(CoordinatorPhase phase, bool elastic = true, bool recovering = false, params string[] voters) =>
        new(phase, elastic, recovering, 3, voters.Contains);

    private static RegisterNode Rejoining(string name) =>
        Register(name) with { Rejoin = new NodeRejoin(2, [Halt(0, 10)], RunHistory.Empty, null!, []) };

    [Fact]
    public void Admission_must_make_matching_nodes_members_before_training_and_joiners_while_taking_over()
    {
        var admission = NewAdmission();
        Assert.Equal(Verdict.Member, admission.Decide(Register("a"), "a", Run(CoordinatorPhase.WaitingForNodes)).Verdict);
        Assert.Equal(Verdict.Joiner, admission.Decide(Register("a"), "a", Run(CoordinatorPhase.WaitingForNodes, recovering: true)).Verdict);
        Assert.Equal(Verdict.Rejoin, admission.Decide(Rejoining("a"), "a", Run(CoordinatorPhase.WaitingForNodes)).Verdict);
        Assert.Equal(Verdict.Member, admission.Decide(Rejoining("a"), "a", Run(CoordinatorPhase.WaitingForNodes, elastic: false)).Verdict);
        Assert.Equal(Verdict.Refuse, admission.Decide(Register("a") with { JobId = "job-b" }, "a", Run(CoordinatorPhase.WaitingForNodes)).Verdict);
    }

    [Fact]
    public void Admission_must_answer_a_retry_and_let_new_nodes_join_only_elastic_runs_while_training()
    {
        var admission = NewAdmission(maxNodes: 2);
        admission.Admit(Register("a"), "a");
        Assert.Equal(Verdict.Retry, admission.Decide(Register("a"), "a", Run(CoordinatorPhase.Training, elastic: false)).Verdict);

        var closed = admission.Decide(Register("b"), "b", Run(CoordinatorPhase.Training, elastic: false));
        Assert.Equal((Verdict.Refuse, false), (closed.Verdict, closed.Logged));
        Assert.Contains("actortrain.elastic.enabled is off", closed.Reason);
        Assert.Contains("running generation 3", admission.Decide(Rejoining("b"), "b", Run(CoordinatorPhase.Training)).Reason);
        Assert.Equal(Verdict.Joiner, admission.Decide(Register("b"), "b", Run(CoordinatorPhase.Regrouping)).Verdict);

        admission.AdmitJoiner(Register("b"), "b");
        Assert.Contains("actortrain.max-nodes = 2", admission.Decide(Register("c"), "c", Run(CoordinatorPhase.Training)).Reason);
    }

    [Fact]
    public void Admission_must_take_back_a_voter_while_the_quorum_is_lost_and_refuse_everyone_once_the_run_ended()
    {
        var admission = NewAdmission();
        Assert.Equal(Verdict.VoterBack, admission.Decide(Rejoining("a"), "a", Run(CoordinatorPhase.QuorumLost, voters: "a")).Verdict);
        Assert.Equal(Verdict.Ignore, admission.Decide(Rejoining("x"), "x", Run(CoordinatorPhase.QuorumLost, voters: "a")).Verdict);
        Assert.Equal(Verdict.Joiner, admission.Decide(Register("x"), "x", Run(CoordinatorPhase.QuorumLost, voters: "a")).Verdict);

        var ended = admission.Decide(Register("a"), "a", Run(CoordinatorPhase.Ended));
        Assert.Equal((Verdict.Refuse, "the run has ended", false), (ended.Verdict, ended.Reason, ended.Logged));
    }
}
