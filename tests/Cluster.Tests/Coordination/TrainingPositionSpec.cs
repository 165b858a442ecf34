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
    public void Halt_states_and_resume_points_read_the_one_position_they_hold()
    {
        var position = new TrainingPosition(158, 4, 1280, 20, true, 41.5, 20, 1);
        var halt = new TrainerHaltState(3, position, true, 377, "c0ffee");
        var resume = new ResumePoint(0, position, 377, "");

        Assert.Equal((158L, 4, 1280L, 20L, true), (halt.GlobalStep, halt.Epoch, halt.SamplesDone, halt.StepsInEpoch, halt.EpochFinished));
        Assert.Same(halt.Position, resume.Position);
        Assert.Equal((41.5, 20L, 1), (resume.LossSum, resume.LossCount, resume.SkippedInEpoch));
    }
}
