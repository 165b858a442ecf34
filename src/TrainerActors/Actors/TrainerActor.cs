using System.Diagnostics;
using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;
using ActorTrain.TrainerActors.Data;
using ActorTrain.TrainerActors.Jobs;
using ActorTrain.TrainerActors.Reporting;
using ActorTrain.TrainerActors.Training;
using Akka.Actor;
using Akka.Event;
using TorchSharp;
using static TorchSharp.torch;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// One model replica on one device. Runs on a pinned dispatcher (its own thread) because it
/// blocks while it computes and while its collectives run. An epoch is a series of
/// <see cref="NextStep"/> messages to itself, so the mailbox is served between steps.
/// One step: forward/backward on this rank's shard → gradients into buckets → hierarchical
/// all-reduce of each bucket (intra-node, cross-node ring, intra-node) → average → optimizer step.
/// </summary>
public sealed class TrainerActor : ReceiveActor
{
    private readonly TrainingJob _job;
    private readonly int _localRank;
    private readonly Device _device;
    private readonly int _intraOpThreads;
    private readonly long _bucketSizeBytes;
    private readonly int _seed;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private Replica _replica = null!;
    private IBatchSource _train = null!;
    private IBatchSource? _test;
    private ConfigureTrainer _world = null!;
    private DistributedSampler _sampler = null!;

    private int _epoch;
    private int[] _epochIndices = [];
    private int _batchInEpoch;
    private int _batchesPerEpoch;
    private long _globalStep;
    private double _epochLossSum;
    private long _epochLossCount;
    private int _epochSkipped;
    private double _windowLoss;
    private int _windowCount;
    private readonly List<double> _computeMs = [];
    private readonly List<double> _intraMs = [];
    private readonly List<double> _crossMs = [];
    private readonly List<double> _stepMs = [];
    private readonly List<LossSample> _lossCurve = [];
    private const int MaxLossCurvePoints = 2000;

    public TrainerActor(TrainingJob job, int localRank, Device device, int intraOpThreads, long bucketSizeBytes, int seed)
    {
        _job = job;
        _localRank = localRank;
        _device = device;
        _intraOpThreads = intraOpThreads;
        _bucketSizeBytes = bucketSizeBytes;
        _seed = seed;

        Receive<ConfigureTrainer>(OnConfigure);
        Receive<RunEpoch>(OnRunEpoch);
        Receive<NextStep>(_ => RunStep());
        Receive<FinishTrainer>(OnFinish);
    }

    public static Props Props(TrainingJob job, int localRank, Device device, int intraOpThreads, long bucketSizeBytes, int seed) =>
        Akka.Actor.Props.Create(() => new TrainerActor(job, localRank, device, intraOpThreads, bucketSizeBytes, seed))
            .WithDispatcher("actortrain.trainer-dispatcher");

    private bool IsRankZero => _world.GlobalRank == 0;

    protected override void PreStart()
    {
        // Per-thread in libtorch's OpenMP pool: this trainer's thread gets its share of the cores.
        torch.set_num_threads(_intraOpThreads);
        _replica = new Replica(_job, _seed, _device, _bucketSizeBytes);
        _train = _job.LoadTrainingData();
        _test = _job.LoadTestData();
        Context.Parent.Tell(new TrainerReady(_localRank, _replica.Fingerprint, _device.ToString()));
    }

    protected override void PostStop() => _replica?.Dispose();

    private void OnConfigure(ConfigureTrainer c)
    {
        _world = c;
        torch.set_num_threads(c.IntraOpThreads);
        _replica.UseBucketSize(c.Plan.BucketSizeBytes);
        _sampler = new DistributedSampler(_train.Count, c.WorldSize, c.GlobalRank, c.Plan.Seed);
        _batchesPerEpoch = _sampler.BatchesPerEpoch(c.Plan.BatchSize);
        if (_batchesPerEpoch == 0)
            throw new InvalidOperationException(
                $"{_train.Count} training samples over {c.WorldSize} rank(s) leave {_sampler.NumSamples} per rank, less than one batch of {c.Plan.BatchSize}");
    }

    private void OnRunEpoch(RunEpoch e)
    {
        if (e.Epoch == 1) BroadcastParameters();
        _epoch = e.Epoch;
        _epochIndices = _sampler.Indices(e.Epoch);
        _batchInEpoch = 0;
        _epochLossSum = 0;
        _epochLossCount = 0;
        _epochSkipped = 0;
        _windowLoss = 0;
        _windowCount = 0;
        if (IsRankZero) Display(ProgressKinds.EpochStart, 0, double.NaN, null);
        Self.Tell(NextStep.Instance);
    }

    private void BroadcastParameters() =>
        Guarded(Replica.BroadcastStep, ct => _replica.BroadcastParameters(_world.GlobalRank == 0, _world.IntraNode, _localRank, _world.CrossNode, _world.Generation, ct));

    /// <summary>Runs a collective under the step timeout, turning a timeout into an error that says what was missing.</summary>
    private T Guarded<T>(long step, Func<CancellationToken, T> collective)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_world.RunCancelled);
        timeout.CancelAfter(_world.StepTimeout);
        try
        {
            return collective(timeout.Token);
        }
        catch (OperationCanceledException) when (_world.RunCancelled.IsCancellationRequested)
        {
            throw new TrainingCancelledException();
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException(
                $"rank {_world.GlobalRank}: step {step} was not reduced within {_world.StepTimeout.TotalSeconds:0}s " +
                "(actortrain.sync.step-timeout); a peer node or a local trainer is not taking part");
        }
    }

    private void Guarded(long step, Action<CancellationToken> collective) =>
        Guarded(step, ct => { collective(ct); return 0; });

    private void RunStep()
    {
        if (_world.RunCancelled.IsCancellationRequested) return;
        var stepWatch = Stopwatch.StartNew();
        _world.Progress.StepStarted(_epoch, _batchInEpoch, _batchesPerEpoch);
        var batch = _world.Plan.BatchSize;
        var indices = _epochIndices.AsSpan(_batchInEpoch * batch, batch);
        var loss = _replica.ForwardBackward(indices, _train);
        var nonFinite = _replica.GradientsToBuckets(loss);
        var computeMs = stepWatch.Elapsed.TotalMilliseconds;
        if (nonFinite > 0)
        {
            _log.Warning("Rank {0}: {1} non-finite gradient value(s) at step {2}; this contribution is withheld", _world.GlobalRank, nonFinite, _globalStep);
            Context.Parent.Tell(new TrainerNonFinite(_localRank, _world.GlobalRank, _globalStep, nonFinite));
        }

        var sync = Guarded(_globalStep, ct => _replica.ReduceBuckets(_world.IntraNode, _localRank, _world.CrossNode, _world.Generation, _globalStep, ct));

        if (_replica.BucketsToGradients(_world.WorldSize))
        {
            _replica.OptimizerStep();
            _world.Metrics.StepCompleted();
        }
        else
        {
            _epochSkipped++;
            _world.Metrics.StepSkipped();
        }

        var meanLoss = _replica.ReducedMeanLoss(_world.WorldSize);
        if (float.IsFinite(meanLoss))
        {
            _epochLossSum += meanLoss;
            _epochLossCount++;
            _windowLoss += meanLoss;
            _windowCount++;
        }
        _computeMs.Add(computeMs);
        _intraMs.Add(sync.IntraNodeMs);
        _crossMs.Add(sync.CrossNodeMs);
        _stepMs.Add(stepWatch.Elapsed.TotalMilliseconds);
        _world.Progress.StepFinished(_stepMs[^1], computeMs);
        _world.Metrics.ObserveStep(computeMs, sync.IntraNodeMs, sync.CrossNodeMs, _stepMs[^1]);
        _globalStep++;
        _batchInEpoch++;

        if (IsRankZero && _batchInEpoch % _world.Plan.LogInterval == 0)
        {
            // The seed's progress line: mean loss (over all replicas) since the last line.
            var windowMean = _windowCount > 0 ? _windowLoss / _windowCount : double.NaN;
            Display(ProgressKinds.LossLine, _batchInEpoch, windowMean, FormattableString.Invariant($"[{_epoch}, {_batchInEpoch,5}] loss: {windowMean:F3}"));
            RecordLoss(windowMean);
            _windowLoss = 0;
            _windowCount = 0;
        }

        if (IsRankZero && Stopwatch.GetElapsedTime(_lastStepEvent) > StepEventInterval)
        {
            _lastStepEvent = Stopwatch.GetTimestamp();
            Display(ProgressKinds.Step, _batchInEpoch, meanLoss, null);
        }

        if (_batchInEpoch < _batchesPerEpoch)
        {
            Self.Tell(NextStep.Instance);
            return;
        }
        var accuracy = -1.0;
        if (IsRankZero && _test is not null)
        {
            accuracy = _job.Evaluate(_replica.Model, _test, _device);
        }
        if (IsRankZero)
        {
            Display(ProgressKinds.EpochEnd, _batchInEpoch, _epochLossCount > 0 ? _epochLossSum / _epochLossCount : double.NaN,
                accuracy >= 0 ? FormattableString.Invariant($"epoch {_epoch}: test accuracy {accuracy:F4} on {_test!.Count} held-out samples") : null);
        }
        Context.Parent.Tell(new TrainerEpochDone(_localRank, _epoch, _globalStep, _epochLossSum, _epochLossCount, _epochSkipped, accuracy));
    }

    private void OnFinish(FinishTrainer f)
    {
        string? modelPath = null;
        if (IsRankZero)
        {
            Directory.CreateDirectory(f.OutDir);
            modelPath = Path.GetFullPath(Path.Combine(f.OutDir, "model.pth"));
            ModelFiles.SaveStateDict(_replica.Model, modelPath);
            Display(ProgressKinds.Message, _batchInEpoch, double.NaN, $"saved {modelPath}");
        }
        var summary = new TrainerSummary(_world.GlobalRank, _replica.Checksum(), _globalStep,
            ReportTimings.Median(_computeMs), ReportTimings.Median(_intraMs), ReportTimings.Median(_crossMs), ReportTimings.Median(_stepMs));
        Context.Parent.Tell(new TrainerFinished(_localRank, summary, modelPath, IsRankZero ? _lossCurve.ToArray() : []));
    }

    /// <summary>Rank 0's progress for the person watching: the loss lines, the epoch bar, the accuracy.</summary>
    private void Display(string kind, long stepInEpoch, double loss, string? text)
    {
        var recent = _stepMs.Count == 0 ? 0 : _stepMs.TakeLast(20).Average();
        var samplesPerSecond = recent > 0 ? _world.Plan.BatchSize * _world.WorldSize * 1000.0 / recent : 0;
        _world.Display.Report(new ProgressEvent(kind, _epoch, _world.Plan.Epochs, stepInEpoch, _batchesPerEpoch, loss, samplesPerSecond, text));
    }

    private static readonly TimeSpan StepEventInterval = TimeSpan.FromMilliseconds(250);
    private long _lastStepEvent;

    /// <summary>Keeps the curve within a message's size: past the cap, every other point is dropped.</summary>
    private void RecordLoss(double loss)
    {
        if (!double.IsFinite(loss)) return;
        _lossCurve.Add(new LossSample(_globalStep, loss));
        if (_lossCurve.Count <= MaxLossCurvePoints) return;
        var kept = _lossCurve.Where((_, i) => i % 2 == 1).ToList();
        _lossCurve.Clear();
        _lossCurve.AddRange(kept);
    }


    private sealed class NextStep
    {
        public static readonly NextStep Instance = new();
        private NextStep() { }
    }
}

/// <summary>The run was ended (by the coordinator, a failure elsewhere or a shutdown) while this trainer waited in a collective.</summary>
public sealed class TrainingCancelledException() : Exception("the run was cancelled while a collective was in progress");
