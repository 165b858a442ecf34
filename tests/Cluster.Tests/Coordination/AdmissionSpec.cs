using ActorTrain.Cluster.Coordination;
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
}
