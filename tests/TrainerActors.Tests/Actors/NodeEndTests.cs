using ActorTrain.Cluster;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.Actors;
using ActorTrain.TrainerActors.Hosting;

namespace ActorTrain.TrainerActors.Tests.Actors;

/// <summary>Why a node ends on its own: the exit code (as the README's table has it) and what a person reads.</summary>
public class NodeEndTests
{
    [Fact]
    public void A_refusal_before_training_is_a_configuration_error_and_after_it_a_lost_node_that_may_rejoin()
    {
        var first = new NodeSession();
        var refused = NodeEnd.Refused("n1", "protocol 3, coordinator speaks 4", trainedBefore: false, first);
        Assert.Equal(ExitCodes.BadConfiguration, refused.ExitCode);
        Assert.Equal("the coordinator refused node n1: protocol 3, coordinator speaks 4", refused.Line);
        Assert.False(first.LeftOut);

        var later = new NodeSession();
        Assert.Equal(ExitCodes.NodeLost, NodeEnd.Refused("n1", "left out", trainedBefore: true, later).ExitCode);
        Assert.True(later.LeftOut);

        var rejoining = new NodeSession { Rejoining = true };
        Assert.Equal(ExitCodes.NodeLost, NodeEnd.Refused("n1", "unknown generation", trainedBefore: false, rejoining).ExitCode);
        Assert.False(rejoining.LeftOut);
    }

    [Fact]
    public void No_answer_names_the_seed_nodes_and_the_key_and_a_failed_rejoin_is_a_lost_node()
    {
        var settings = ActorTrainSettings.Create(ActorTrainSettings.DefaultConfig());
        var unanswered = NodeEnd.Unanswered("n1", settings, rejoining: false, ["akka.tcp://actortrain@10.0.0.1:4053"]);
        Assert.Equal(ExitCodes.BadConfiguration, unanswered.ExitCode);
        Assert.Contains("actortrain.startup-timeout", unanswered.Line);
        Assert.Contains("akka.tcp://actortrain@10.0.0.1:4053", unanswered.Line);
        Assert.Contains("the configured seed nodes", NodeEnd.Unanswered("n1", settings, false, []).Line);

        var rejoin = NodeEnd.Unanswered("n1", settings, rejoining: true, []);
        Assert.Equal(ExitCodes.NodeLost, rejoin.ExitCode);
        Assert.Contains("actortrain.elastic.rejoin-timeout", rejoin.Line);
    }

    [Fact]
    public void A_lost_seed_or_being_left_out_ends_the_node_as_lost()
    {
        var session = new NodeSession();
        var leftOut = NodeEnd.LeftOut("n2", "the run went on without this node", session);
        Assert.Equal((ExitCodes.NodeLost, "node n2: the run went on without this node"), (leftOut.ExitCode, leftOut.Line));
        Assert.True(session.LeftOut);

        var seed = NodeEnd.SeedLost("n2", new Akka.Actor.Address("akka.tcp", "actortrain", "10.0.0.1", 4053), "removed", noSeedLeft: true);
        Assert.Equal(ExitCodes.NodeLost, seed.ExitCode);
        Assert.EndsWith("the coordinator is gone and no other seed node is up", seed.Line);
        Assert.Equal("the seed node akka.tcp://actortrain@10.0.0.1:4053 is removed", seed.Reason);
    }

    [Fact]
    public void A_node_that_cannot_start_or_resume_has_a_configuration_error()
    {
        var start = NodeEnd.CannotStart("n3", new InvalidOperationException("port 4053 is taken"));
        Assert.Equal((ExitCodes.BadConfiguration, "node n3 cannot start: port 4053 is taken"), (start.ExitCode, start.Line));
        Assert.Equal(ExitCodes.BadConfiguration, NodeEnd.CannotResume("n3", new IOException("no such folder")).ExitCode);
    }

    [Fact]
    public void A_trainer_that_timed_out_says_so_and_any_other_names_its_exception()
    {
        Assert.Equal("step 12 timed out", NodeEnd.TrainerFailure(new TimeoutException("step 12 timed out"), null, null));
        Assert.Equal("IOException: broken pipe", NodeEnd.TrainerFailure(new IOException("broken pipe"), null, null));
    }
}
