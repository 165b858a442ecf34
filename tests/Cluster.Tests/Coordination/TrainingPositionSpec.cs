using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class TrainingPositionSpec
{
    [Fact]
    public void A_new_epoch_starts_its_cursor_steps_and_losses_over_and_keeps_the_run_s_step()
    {
        var end = new TrainingPosition(140, 2, 9000, 70, true, 35.0, 70, 3);

        Assert.Equal(new TrainingPosition(140, 3, 0, 0, false, 0, 0, 0), end.BeginEpoch(3));
        Assert.Equal(0.5, end.MeanLoss);
        Assert.True(double.IsNaN(end.BeginEpoch(3).MeanLoss));
    }

    [Fact]
    public void A_generation_resumes_from_the_very_position_its_source_trainer_stopped_at()
    {
        var position = new TrainingPosition(158, 4, 1280, 20, true, 41.5, 20, 1);

        var resume = SourceReplica.ResumeFrom(new TrainerHaltState(3, position, true, 377, "c0ffee"), "ckpt/ckpt-000000158.atc");

        Assert.Same(position, resume.Position);
        Assert.Equal((377, "ckpt/ckpt-000000158.atc"), (resume.OptimizerStateBytes, resume.CheckpointFile));
    }
}
