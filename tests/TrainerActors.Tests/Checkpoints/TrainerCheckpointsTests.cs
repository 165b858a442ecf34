using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.Examples.Mnist;
using ActorTrain.TrainerActors.Checkpoints;
using ActorTrain.TrainerActors.Tests.Data;
using ActorTrain.TrainerActors.Training;
using TorchSharp;

namespace ActorTrain.TrainerActors.Tests.Checkpoints;

/// <summary>The trainer's side of checkpoints: what is saved, what is offered for --resume, and a save that fails.</summary>
[Collection(TorchRandomCollection.Name)]
public sealed class TrainerCheckpointsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("actortrain-tc-").FullName;
    private readonly Replica _replica = new(new MnistJob(DataTestSupport.MnistDataDirectory), 7, torch.CPU, 256 * 1024);
    private readonly List<string> _warnings = [];

    private static CheckpointSettings Settings(int everySteps = 0, bool atEpochEnd = true) =>
        new() { Dir = "", EverySteps = everySteps, AtEpochEnd = atEpochEnd, Keep = 3, ResumeFrom = "" };

    private TrainerCheckpoints Checkpoints(string dir, CheckpointSettings? settings = null) =>
        new(new CheckpointStore(dir, 3), settings ?? Settings(), "mnist", _replica.Fingerprint, _warnings.Add);

    private static readonly CheckpointRun Run = new(new RunHistory([new GenerationRecord(1, ["n0"], 2, 0, "start", 0, 0)], [], 12.5), 2, 42);

    private static TrainerHaltState State(long step, int epoch = 2, bool finished = false) =>
        new(0, new TrainingPosition(step, epoch, 1280, 10, finished, 12.5, 10, 0), false, 0, "c0ffee");

    [Theory]
    [InlineData(0, true, 70, true, true)]
    [InlineData(0, true, 70, false, false)]
    [InlineData(0, false, 70, true, false)]
    [InlineData(25, false, 50, false, true)]
    [InlineData(25, false, 60, false, false)]
    [InlineData(25, true, 0, true, false)]
    public void Due_follows_every_steps_and_at_epoch_end(int every, bool atEnd, long step, bool endOfEpoch, bool due) =>
        Assert.Equal(due, Checkpoints(_dir, Settings(every, atEnd)).Due(step, endOfEpoch));

    [Fact]
    public void A_saved_checkpoint_is_offered_with_its_position_and_history_and_loads_the_replica()
    {
        var finished = new EpochRecord(2, 140, 1.25, 0, new() { ["test_accuracy"] = 0.85 });
        Checkpoints(_dir).Save(Run, State(140, finished: true), _replica, finished);

        var offer = TrainerCheckpoints.Offer(_dir, "mnist", _replica.Fingerprint, _warnings.Add);

        Assert.NotNull(offer);
        Assert.EndsWith(CheckpointStore.FileName(140), offer.File);
        Assert.Equal(140, offer.State.Position.GlobalStep);
        Assert.True(offer.State.Position.EpochFinished);
        Assert.Equal(finished, Assert.Single(offer.History.Epochs));
        Assert.Single(offer.History.Generations);
        using var other = new Replica(new MnistJob(DataTestSupport.MnistDataDirectory), 99, torch.CPU, 256 * 1024);
        Assert.NotEqual(_replica.Checksum(), other.Checksum());
        Checkpoints(_dir).Load(offer.File, other);
        Assert.Equal(_replica.Checksum(), other.Checksum());
        Assert.Empty(_warnings);
    }

    [Fact]
    public void A_checkpoint_of_another_job_or_model_is_refused_by_name()
    {
        Checkpoints(_dir).Save(Run, State(70), _replica, null);

        var job = Assert.Throws<InvalidOperationException>(() => TrainerCheckpoints.Offer(_dir, "other-job", _replica.Fingerprint, _warnings.Add));
        Assert.Contains("other-job", job.Message);
        var model = Assert.Throws<InvalidOperationException>(() => TrainerCheckpoints.Offer(_dir, "mnist", "0123456789abcdef", _warnings.Add));
        Assert.Contains("0123456789abcdef", model.Message);
        Assert.Null(TrainerCheckpoints.Offer(Path.Combine(_dir, "empty"), "mnist", _replica.Fingerprint, _warnings.Add));
    }

    [Fact]
    public void A_save_that_cannot_be_written_is_a_warning_naming_the_place_and_training_goes_on()
    {
        // A regular file where the directory should be: no user, root included, can write there.
        var blocker = Path.Combine(_dir, "not-a-dir");
        File.WriteAllText(blocker, "x");

        Checkpoints(Path.Combine(blocker, "checkpoints")).Save(Run, State(70), _replica, null);

        var warning = Assert.Single(_warnings);
        Assert.Contains("not written", warning);
        Assert.Contains("not-a-dir", warning);
        Assert.Contains("training goes on", warning);
    }

    public void Dispose()
    {
        _replica.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
