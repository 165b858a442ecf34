using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using static ActorTrain.Cluster.Tests.Coordination.PolicySamples;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class SourceReplicaSpec
{
    [Fact]
    public void Source_must_be_the_replica_that_got_furthest()
    {
        var source = SourceReplica.Choose([Halted("a", 2, Halt(0, 40), Halt(1, 40)), Halted("b", 2, Halt(2, 41), Halt(3, 40))])!;

        Assert.Equal(("b", 0), (source.Node, source.LocalRank));
        Assert.Equal(41, source.Resume.Position.GlobalStep);
        Assert.Equal(0, source.StepsRedone);
    }

    [Fact]
    public void Source_must_prefer_a_completed_step_over_one_in_flight_and_count_the_lost_step()
    {
        var source = SourceReplica.Choose([Halted("a", 2, Halt(0, 40, inFlight: true), Halt(1, 40)), Halted("b", 2, Halt(2, 40, inFlight: true))])!;

        Assert.Equal(("a", 1), (source.Node, source.LocalRank));
        Assert.Equal(1, source.StepsRedone);
    }

    [Fact]
    public void Source_must_start_fresh_when_no_replica_took_a_step_and_be_absent_without_states()
    {
        var fresh = SourceReplica.Choose([Halted("a", 2, Halt(0, -1))])!;
        Assert.Null(fresh.Node);
        Assert.Equal(SourceReplica.FreshStart, fresh.Resume);
        Assert.Null(SourceReplica.Choose([Halted("a", 2)]));
    }

    [Fact]
    public void Source_must_resume_from_the_furthest_checkpoint_offered()
    {
        var history = new RunHistory([], [], 3);
        Registration<string> Offering(string name, long step) =>
            new(Register(name, checkpoint: new CheckpointOffer($"/ck/{name}", Halt(0, step, finished: true, epoch: 2), history)), name);

        var (source, offer) = SourceReplica.FromCheckpoint([Offering("a", 30), Offering("b", 70), new Registration<string>(Register("c"), "c")])!.Value;

        Assert.Equal("/ck/b", offer.File);
        Assert.Equal("b", source.Node);
        Assert.Equal((2, 70L, true, "/ck/b"), (source.Resume.Position.Epoch, source.Resume.Position.GlobalStep, source.Resume.Position.EpochFinished, source.Resume.CheckpointFile));
        Assert.Null(SourceReplica.FromCheckpoint([new Registration<string>(Register("c"), "c")]));
    }
}
