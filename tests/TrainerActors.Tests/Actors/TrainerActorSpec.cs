using ActorTrain.Sync;
using ActorTrain.Sync.Compression;
using ActorTrain.Cluster.Metrics;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Sync.Collectives;
using ActorTrain.TrainerActors.Actors;
using ActorTrain.TrainerActors.Reporting;
using Akka.Actor;
using Akka.TestKit;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Tests.Actors;

/// <summary>
/// A real trainer actor (TorchSharp, a tiny model, the shared-memory collective of one trainer)
/// whose parent is a probe playing the node.
/// </summary>
[Collection(TorchRandomCollection.Name)]
public sealed class TrainerActorSpec : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    private const int StepsPerEpoch = TinyJob.Samples / 8;
    private readonly TestProbe _node;
    private readonly RecordingSink _display = new();
    private readonly SharedMemoryCollective _intraNode = new(1);
    private readonly CancellationTokenSource _run = new();
    private readonly CancellationTokenSource _generation = new();
    private readonly TrainerProgress _progress = new(0);

    public TrainerActorSpec() : base(ActorSpecConfig.Node(Path.GetTempPath()), "actortrain-trainer-spec") => _node = CreateTestProbe();

    /// <summary>A trainer built and told its world: one rank, one epoch of <see cref="StepsPerEpoch"/> steps.</summary>
    private IActorRef ConfiguredTrainer(TinyJob? job = null)
    {
        var trainer = _node.ChildActorOf(TrainerActor.Props(job ?? new TinyJob(), new TrainerSetup(0, CPU, 1, 1 << 20, 42)), "trainer-0");
        var ready = _node.ExpectMsg<TrainerReady>(ActorSpecConfig.Timeout);
        Assert.Equal((0, "cpu"), (ready.LocalRank, ready.Device));
        var plan = new TrainingPlan(1, 8, 42, 2, 1 << 20, false, 64 * 1024, "akka", [], "none", 1);
        var group = new ProcessGroup(new GroupMember(0, 1, 0, 0, 1), _intraNode, null, WireCompression.None, new GenerationScope(1, _generation.Token));
        _node.Send(trainer, new ConfigureTrainer(1, 0, 1, plan, group, 1, _progress, new NodeMetrics("node-a"), _display,
            TimeSpan.FromSeconds(30), _run.Token, new ResumePoint(0, new TrainingPosition(0, 1, 0, 0, false, 0, 0, 0), 0, ""), null));
        return trainer;
    }

    [Fact]
    public void Trainer_must_train_an_epoch_report_its_progress_and_halt_when_asked()
    {
        var trainer = ConfiguredTrainer();

        _node.Send(trainer, new RunEpoch(1));

        var done = _node.ExpectMsg<TrainerEpochDone>(ActorSpecConfig.Timeout);
        Assert.Equal((0, 1, (long)StepsPerEpoch, (long)StepsPerEpoch), (done.LocalRank, done.Epoch, done.Steps, done.LossCount));
        Assert.True(double.IsFinite(done.LossSum) && done.LossSum > 0, $"loss sum {done.LossSum}");
        Assert.InRange(done.Metrics[ActorTrain.TrainerActors.Jobs.TrainingJob.AccuracyMetric], 0, 1);
        // What the node reads on its timer, and what rank 0 shows the person watching.
        Assert.Equal(StepsPerEpoch, _progress.Snapshot().Step);
        Assert.Contains(_display.Events, e => e.Kind == ProgressKinds.EpochEnd && e.Text!.Contains("test accuracy"));
        Assert.Contains(_display.Events, e => e.Kind == ProgressKinds.LossLine);

        _node.Send(trainer, new HaltTrainer(2, Graceful: true));
        var halted = _node.ExpectMsg<TrainerHalted>(ActorSpecConfig.Timeout);
        Assert.Equal((0, 2L), (halted.LocalRank, halted.NextGeneration));
        Assert.Equal(StepsPerEpoch, halted.State.Position.GlobalStep);
        Assert.True(halted.State.Position.EpochFinished);
        Assert.False(halted.State.InFlight);
    }

    [Fact]
    public void Trainer_asked_to_halt_gracefully_mid_epoch_stops_at_a_step_boundary_before_the_epoch_ends()
    {
        var trainer = ConfiguredTrainer();

        _node.Send(trainer, new RunEpoch(1));
        _node.Send(trainer, new HaltTrainer(2, Graceful: true));

        var halted = _node.ExpectMsg<TrainerHalted>(ActorSpecConfig.Timeout);
        Assert.InRange(halted.State.Position.GlobalStep, 1, StepsPerEpoch - 1);
        Assert.False(halted.State.Position.EpochFinished);
        Assert.False(halted.State.InFlight);
        // Stopped: no epoch report follows.
        _node.ExpectNoMsg(TimeSpan.FromMilliseconds(500));
    }

    [Fact]
    public void Trainer_finishing_reports_its_summary_and_rank_zero_writes_the_model()
    {
        var trainer = ConfiguredTrainer();
        var outDir = Directory.CreateTempSubdirectory("actortrain-trainer-spec-").FullName;
        try
        {
            _node.Send(trainer, new RunEpoch(1));
            _node.ExpectMsg<TrainerEpochDone>(ActorSpecConfig.Timeout);

            _node.Send(trainer, new FinishTrainer(outDir));

            var finished = _node.ExpectMsg<TrainerFinished>(ActorSpecConfig.Timeout);
            Assert.Equal((0, StepsPerEpoch), (finished.Summary.Rank, (int)finished.Summary.Steps));
            Assert.Matches("^[0-9a-f]{16}$", finished.Summary.Checksum);
            Assert.True(File.Exists(finished.ModelPath), $"no model at {finished.ModelPath}");
        }
        finally
        {
            Directory.Delete(outDir, recursive: true);
        }
    }

    [Fact]
    public void A_step_s_compute_is_all_of_its_own_work_the_optimizer_step_included()
    {
        // The report's exposed communication is (step - compute) / step: work done after backward
        // (here a slow callback before the optimizer step) must count as compute, not as waiting.
        var trainer = ConfiguredTrainer(new TinyJob(new SlowBeforeOptimizerStep(TimeSpan.FromMilliseconds(20))));
        var outDir = Directory.CreateTempSubdirectory("actortrain-trainer-spec-").FullName;
        try
        {
            _node.Send(trainer, new RunEpoch(1));
            _node.ExpectMsg<TrainerEpochDone>(ActorSpecConfig.Timeout);
            _node.Send(trainer, new FinishTrainer(outDir));

            var summary = _node.ExpectMsg<TrainerFinished>(ActorSpecConfig.Timeout).Summary;
            Assert.True(summary.ComputeMs >= 20, $"compute {summary.ComputeMs:F2} ms left out the 20 ms before the optimizer step");
            // One rank: its reduction waits for no one, so almost all of the step is compute.
            Assert.True(summary.StepMs - summary.ComputeMs < 5, $"step {summary.StepMs:F2} ms, compute {summary.ComputeMs:F2} ms");
        }
        finally
        {
            Directory.Delete(outDir, recursive: true);
        }
    }

    private sealed class SlowBeforeOptimizerStep(TimeSpan delay) : ActorTrain.TrainerActors.Jobs.TrainingCallback
    {
        public override void BeforeOptimizerStep(ActorTrain.TrainerActors.Jobs.TrainingContext context, nn.Module<Tensor, Tensor> model, optim.Optimizer optimizer) =>
            Thread.Sleep(delay);
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (!disposing) return;
        _run.Cancel();
        _intraNode.Dispose();
        _display.Dispose();
    }
}
