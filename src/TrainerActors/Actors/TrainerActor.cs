using System.Diagnostics;
using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Sync;
using ActorTrain.TrainerActors.Checkpoints;
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
internal sealed class TrainerActor : ReceiveActor
{
    private readonly TrainingJob _job;
    private readonly TrainerSetup _setup;
    private readonly int _localRank;
    private readonly Device _device;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private Replica _replica = null!;
    private GradientReducer _reducer = null!;
    private IBatchSource _train = null!;
    private IBatchSource? _test;
    private IReadOnlyList<TrainingCallback> _callbacks = [];
    private ConfigureTrainer _world = null!;
    private DistributedSampler _sampler = null!;
    // The run's history as the node last forwarded it; checkpoints carry it.
    private RunHistory _history = RunHistory.Empty;

    // Where this replica is in the run. Adopted from the generation's resume point only once the
    // replica holds the source's state, so a halted trainer always reports what it really holds.
    // A replica that has never taken part in a step reports GlobalStep -1.
    private TrainingPosition _position = TrainingPosition.None;

    private int[] _order = [];
    private int _orderEpoch = -1;
    private int _stepsThisEpoch;
    private bool _needsSync;
    private bool _running;
    private bool _stopped;
    private bool _inFlight;
    private bool _pauseRequested;
    private HaltTrainer? _haltRequest;
    private long _reportedHaltFor = -1;
    private double _windowLoss;
    private int _windowCount;
    private readonly List<double> _computeMs = [];
    private readonly List<double> _intraMs = [];
    private readonly List<double> _crossMs = [];
    private readonly List<double> _stepMs = [];
    private readonly List<LossSample> _lossCurve = [];
    private const int MaxLossCurvePoints = 2000;

    /// <summary>
    /// Fault injection for recovery tests and drills: a trainer whose process has this variable set
    /// throws when it starts the given global step, as a bad batch or an out-of-memory error would.
    /// </summary>
    public const string ThrowAtStepVariable = "ACTORTRAIN_FAULT_THROW_AT_STEP";
    private readonly long _throwAtStep = long.TryParse(Environment.GetEnvironmentVariable(ThrowAtStepVariable), out var step) ? step : -1;

    public TrainerActor(TrainingJob job, TrainerSetup setup)
    {
        _job = job;
        _setup = setup;
        _localRank = setup.LocalRank;
        _device = setup.Device;

        Receive<ConfigureTrainer>(OnConfigure);
        Receive<RunEpoch>(OnRunEpoch);
        Receive<NextStep>(_ => RunStep());
        Receive<HaltTrainer>(OnHalt);
        Receive<FinishTrainer>(OnFinish);
        Receive<HistoryUpdate>(h => _history = h.History);
    }

    public static Props Props(TrainingJob job, TrainerSetup setup) =>
        Akka.Actor.Props.Create(() => new TrainerActor(job, setup))
            .WithDispatcher("actortrain.trainer-dispatcher");

    private bool IsRankZero => _world.GlobalRank == 0;

    protected override void PreStart()
    {
        // Per-thread in libtorch's OpenMP pool: this trainer's thread gets its share of the cores.
        torch.set_num_threads(_setup.IntraOpThreads);
        _replica = new Replica(_job, _setup.Seed, _device, _setup.BucketSizeBytes);
        var overlap = _setup.OverlapBackward && _device.type == DeviceType.CPU;
        _reducer = new GradientReducer(_replica, overlap ? $"actortrain-reduce-{_localRank}" : null);
        if (_setup.OverlapBackward && !overlap) _log.Info("Trainer {0}: buckets are reduced after backward (overlap-backward is for CPU trainers; this one is on {1})", _localRank, _device);
        _train = _job.LoadTrainingData();
        _test = _job.LoadTestData();
        _callbacks = _job.CreateCallbacks();
        _sampler = new DistributedSampler(_train.Count, _setup.Seed);
        // Before the node registers: the first step of the run should not pay for libtorch's and the runtime's first calls.
        if (_setup.WarmUpBatch > 0) WarmUp();
        Context.Parent.Tell(new TrainerReady(_localRank, _replica.Fingerprint, _device.ToString()));
    }

    /// <summary>
    /// A step that leaves no trace (<see cref="Replica.WarmUp"/>) and the job's evaluation on one evaluation batch of the
    /// held-out data, whose result is dropped. A failure of the evaluation's warm-up costs only time; the epoch's end
    /// reports it if it is real.
    /// </summary>
    private void WarmUp()
    {
        _replica.WarmUp(_train, _setup.WarmUpBatch);
        if (_test is null) return;
        try
        {
            EvaluateJob(new FirstSamples(_test, TrainingJob.EvaluationBatchSize), new TrainingContext(0, 1, _localRank, _device, 0, 0, 0));
        }
        catch (Exception e)
        {
            _log.Debug("Trainer {0}: the evaluation's warm-up failed: {1}", _localRank, e.Message);
        }
    }

    protected override void PostStop()
    {
        _reducer?.Dispose();
        _replica?.Dispose();
    }

    private void OnConfigure(ConfigureTrainer c)
    {
        _world = c;
        torch.set_num_threads(c.IntraOpThreads);
        _replica.UseBucketSize(c.Plan.BucketSizeBytes);
        if (_reducer.Overlaps && _localRank == 0)
            ProgressLine.Info("Rank {0}: overlap-backward: {1} of {2} bucket(s) can start reducing during backward ({3} modules signal it)",
                c.GlobalRank, _reducer.EarlyBuckets, _replica.Layout.Buckets.Count, _reducer.HookedModules);
        if (_sampler.Seed != c.Plan.Seed) _sampler = new DistributedSampler(_train.Count, c.Plan.Seed);
        if (_sampler.StepsLeft(0, c.WorldSize, c.Plan.BatchSize * c.Plan.AccumulationSteps) == 0)
            throw new InvalidOperationException(
                $"{_train.Count} training samples do not fill one global batch of {c.WorldSize} rank(s) x {c.Plan.BatchSize} x {c.Plan.AccumulationSteps} micro-batch(es)");
        _needsSync = true;
        _running = false;
        _stopped = false;
        _inFlight = false;
        _pauseRequested = false;
        _haltRequest = null;
        if (c.Resume.CheckpointFile.Length > 0 && c.GlobalRank == c.Resume.SourceRank)
        {
            // This replica starts the run from a checkpoint; the broadcast hands it to the others.
            var checkpoints = c.Checkpoints ?? throw new InvalidOperationException("a checkpoint to resume from, but no checkpoint store");
            checkpoints.Load(c.Resume.CheckpointFile, _replica);
            if (_replica.SaveOptimizerState().Length != c.Resume.OptimizerStateBytes)
                throw new InvalidOperationException($"checkpoint {c.Resume.CheckpointFile} changed while it was being loaded");
        }
    }

    /// <summary>
    /// The first collective of a generation: every replica takes the source rank's parameters and
    /// optimizer state, and the run's position from the resume point.
    /// </summary>
    private bool SyncWithSource()
    {
        if (!_needsSync) return true;
        var r = _world.Resume;
        if (!TryCollective(r.Position.GlobalStep, ct => _replica.BroadcastState(_world.Group, r.SourceRank, r.OptimizerStateBytes, r.Position.GlobalStep, ct)))
            return false;
        _needsSync = false;
        _position = r.Position;
        return true;
    }

    private void OnRunEpoch(RunEpoch e)
    {
        if (_stopped || !SyncWithSource()) return;
        if (e.Epoch != _position.Epoch || _position.EpochFinished) _position = _position.BeginEpoch(e.Epoch);
        if (_orderEpoch != _position.Epoch)
        {
            _order = _sampler.Order(_position.Epoch);
            _orderEpoch = _position.Epoch;
        }
        _stepsThisEpoch = (int)_position.StepsInEpoch + _sampler.StepsLeft(_position.SamplesDone, _world.WorldSize, _world.Plan.BatchSize * _world.Plan.AccumulationSteps);
        _windowLoss = 0;
        _windowCount = 0;
        _running = true;
        foreach (var callback in _callbacks) callback.OnEpochBegin(JobContext(), _replica.Optimizer);
        if (IsRankZero) Display(_position.StepsInEpoch == 0 ? ProgressKinds.EpochStart : ProgressKinds.Step, _position.StepsInEpoch, double.NaN, null);
        if (_position.StepsInEpoch >= _stepsThisEpoch) EndEpoch();
        else Self.Tell(NextStep.Instance);
    }

    /// <summary>
    /// Graceful: finish steps until every replica has agreed (inside a reduction) to stop after the
    /// same one. Otherwise stop now; a collective in progress was already released by the node.
    /// </summary>
    private void OnHalt(HaltTrainer h)
    {
        _haltRequest = h;
        if (!h.Graceful || !_running) _stopped = true;
        else _pauseRequested = true;
        ReportHaltIfStopped();
    }

    private void ReportHaltIfStopped()
    {
        if (!_stopped || _haltRequest is null || _reportedHaltFor == _haltRequest.NextGeneration) return;
        _running = false;
        _reportedHaltFor = _haltRequest.NextGeneration;
        _world?.Progress.SetWaitingBucket(-1);
        Context.Parent.Tell(new TrainerHalted(_localRank, _haltRequest.NextGeneration, CurrentState()));
    }

    // A trainer that never had a world (its node is still joining) holds no rank and no progress.
    private TrainerHaltState CurrentState() =>
        new(_world?.GlobalRank ?? -1, _position,
            _inFlight, _replica.SaveOptimizerState().Length, _replica.Checksum());

    /// <summary>
    /// Runs a collective of this generation under the step timeout. False when the generation
    /// ended under it (the node released it, a neighbour's connection broke, or the deadline
    /// passed): this trainer then stops and waits to be told the next generation.
    /// </summary>
    private bool TryCollective(long step, Action<CancellationToken> collective)
    {
        using var deadline = StepDeadline();
        return TryCollective(step, deadline, collective);
    }

    /// <summary>Cancelled when the generation ends or after the step timeout.</summary>
    private CancellationTokenSource StepDeadline()
    {
        var deadline = CancellationTokenSource.CreateLinkedTokenSource(_world.Group.Generation.Cancelled);
        deadline.CancelAfter(_world.StepTimeout);
        return deadline;
    }

    private bool TryCollective(long step, CancellationTokenSource deadline, Action<CancellationToken> collective)
    {
        string? broken = null;
        try
        {
            collective(deadline.Token);
            return true;
        }
        catch (OperationCanceledException) when (_world.RunCancelled.IsCancellationRequested)
        {
            throw new TrainingCancelledException();
        }
        catch (OperationCanceledException) when (_world.Group.Generation.Cancelled.IsCancellationRequested)
        {
            // The node ended this generation (a regroup); nothing to report beyond the halt.
        }
        catch (OperationCanceledException)
        {
            broken = $"rank {_world.GlobalRank}: step {step} was not reduced within {_world.StepTimeout.TotalSeconds:0}s " +
                "(actortrain.sync.step-timeout); a peer node or a local trainer is not taking part";
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            broken = $"rank {_world.GlobalRank}: the data plane failed at step {step}: {e.Message}";
        }
        _stopped = true;
        _inFlight = step >= 0;
        _running = false;
        _world.Progress.StepAbandoned();
        if (broken is not null)
        {
            _log.Warning("{0}", broken);
            Context.Parent.Tell(new TrainerBroken(_localRank, _world.Generation, broken));
        }
        ReportHaltIfStopped();
        return false;
    }

    private void RunStep()
    {
        if (_world.RunCancelled.IsCancellationRequested || _stopped || !_running) return;
        if (_position.GlobalStep == _throwAtStep)
            throw new InvalidOperationException($"fault injected at step {_position.GlobalStep} ({ThrowAtStepVariable})");
        var stepWatch = Stopwatch.StartNew();
        // Time spent in collectives (the buffer broadcast, the wait for the reduction): the step's
        // compute is the rest, its own work: forward, backward, the bucket copies, the optimizer.
        var collectives = new Stopwatch();
        _world.Progress.StepStarted(_position.Epoch, _position.StepsInEpoch, _stepsThisEpoch, _position.GlobalStep);
        var batch = _world.Plan.BatchSize;
        // Gradient accumulation: k micro-batches, each the next global batch of the epoch's order; one reduction.
        var k = _world.Plan.AccumulationSteps;
        // The step timeout counts from here: with the overlap, buckets are reduced during backward.
        using var deadline = StepDeadline();
        // DDP's broadcast_buffers: every replica runs forward with rank 0's running statistics.
        collectives.Start();
        if (_world.Plan.BroadcastBuffers && !TryCollective(_position.GlobalStep, deadline, ct => _replica.BroadcastModuleBuffers(_world.Group, _position.GlobalStep, ct)))
            return;
        collectives.Stop();
        var pass = _reducer.Begin(new ReductionStep(_world.Group, _position.GlobalStep, _world.Progress.SetWaitingBucket), deadline.Token);
        var loss = 0f;
        try
        {
            for (var m = 0; m < k; m++)
            {
                var microBatch = m;
                loss += pass.Run(lastMicroBatch: m == k - 1, () => _replica.ForwardBackward(
                    DistributedSampler.Batch(_order, _position.SamplesDone + (long)microBatch * _world.WorldSize * batch, _world.WorldSize, _world.GlobalRank, batch),
                    _train, microBatch, k)) / k;
            }
        }
        catch
        {
            // Buckets already reducing use the buffers: wait for them before anything else does.
            pass.Abort();
            throw;
        }
        var nonFinite = pass.Finish(loss, _pauseRequested);
        if (nonFinite > 0)
        {
            _log.Warning("Rank {0}: {1} non-finite gradient value(s) at step {2}; this contribution is withheld", _world.GlobalRank, nonFinite, _position.GlobalStep);
            Context.Parent.Tell(new TrainerNonFinite(_localRank, _world.GlobalRank, _position.GlobalStep, nonFinite));
        }

        var sync = default(SyncTimings);
        collectives.Start();
        if (!TryCollective(_position.GlobalStep, deadline, _ => sync = pass.Wait()))
            return;
        collectives.Stop();
        _world.Progress.SetWaitingBucket(-1);

        if (_replica.BucketsToGradients(_world.WorldSize))
        {
            foreach (var callback in _callbacks) callback.BeforeOptimizerStep(JobContext(), _replica.Model, _replica.Optimizer);
            _replica.OptimizerStep();
            _world.Metrics.StepCompleted();
        }
        else
        {
            _position = _position with { SkippedInEpoch = _position.SkippedInEpoch + 1 };
            _world.Metrics.StepSkipped();
        }

        var meanLoss = _replica.ReducedMeanLoss(_world.WorldSize);
        if (float.IsFinite(meanLoss))
        {
            _position = _position with { LossSum = _position.LossSum + meanLoss, LossCount = _position.LossCount + 1 };
            _windowLoss += meanLoss;
            _windowCount++;
        }
        var stepMs = stepWatch.Elapsed.TotalMilliseconds;
        var computeMs = stepMs - collectives.Elapsed.TotalMilliseconds;
        _computeMs.Add(computeMs);
        _intraMs.Add(sync.IntraNodeMs);
        _crossMs.Add(sync.CrossNodeMs);
        _stepMs.Add(stepMs);
        _world.Progress.StepFinished(stepMs, computeMs);
        _world.Metrics.ObserveStep(computeMs, sync.IntraNodeMs, sync.CrossNodeMs, stepMs);
        foreach (var callback in _callbacks) callback.OnStepEnd(JobContext(), _replica.Optimizer, meanLoss);
        _position = _position with
        {
            GlobalStep = _position.GlobalStep + 1,
            SamplesDone = _position.SamplesDone + (long)_world.WorldSize * batch * k,
            StepsInEpoch = _position.StepsInEpoch + 1,
        };

        if (IsRankZero && _position.StepsInEpoch % _world.Plan.LogInterval == 0)
        {
            // The seed's progress line: mean loss (over all replicas) since the last line.
            var windowMean = _windowCount > 0 ? _windowLoss / _windowCount : double.NaN;
            Display(ProgressKinds.LossLine, _position.StepsInEpoch, windowMean, FormattableString.Invariant($"[{_position.Epoch}, {_position.StepsInEpoch,5}] loss: {windowMean:F3}"));
            RecordLoss(windowMean);
            _windowLoss = 0;
            _windowCount = 0;
        }

        if (IsRankZero && Stopwatch.GetElapsedTime(_lastStepEvent) > StepEventInterval)
        {
            _lastStepEvent = Stopwatch.GetTimestamp();
            Display(ProgressKinds.Step, _position.StepsInEpoch, meanLoss, null);
        }
        SaveCheckpointIfDue(null);

        // Every replica saw the same sum of pause votes, so all stop after this same step.
        var pause = _replica.PauseVoted;
        if (_position.StepsInEpoch < _stepsThisEpoch)
        {
            if (pause) { _stopped = true; ReportHaltIfStopped(); }
            else Self.Tell(NextStep.Instance);
            return;
        }
        EndEpoch();
        if (pause || _pauseRequested) { _stopped = true; ReportHaltIfStopped(); }
    }

    private void EndEpoch()
    {
        _running = false;
        _position = _position with { EpochFinished = true };
        var metrics = IsRankZero && _test is not null ? EvaluateJob(_test, JobContext()) : [];
        var meanLoss = _position.MeanLoss;
        if (IsRankZero)
        {
            Display(ProgressKinds.EpochEnd, _position.StepsInEpoch, meanLoss,
                metrics.Count > 0 ? $"epoch {_position.Epoch}:{JobMetrics.Describe(metrics).TrimStart(',')} on {_test!.Count} held-out samples" : null);
        }
        foreach (var callback in _callbacks) callback.OnEpochEnd(JobContext(), meanLoss, metrics);
        SaveCheckpointIfDue(new EpochRecord(_position.Epoch, _position.GlobalStep, meanLoss, _position.SkippedInEpoch, metrics));
        Context.Parent.Tell(new TrainerEpochDone(_localRank, _position.Epoch, _position.GlobalStep, _position.LossSum, _position.LossCount, _position.SkippedInEpoch, metrics));
    }

    /// <summary>The job's metrics on its held-out data: eval mode, no gradients, one dispose scope.</summary>
    private Dictionary<string, double> EvaluateJob(IBatchSource test, TrainingContext context)
    {
        _replica.Model.eval();
        try
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var metrics = new Dictionary<string, double>(_job.Evaluate(_replica.Model, test, context));
            JobMetrics.Validate(metrics, _job.Name);
            return metrics;
        }
        finally
        {
            _replica.Model.train();
        }
    }

    /// <summary>Where this replica stands, for the job's code.</summary>
    private TrainingContext JobContext() =>
        new(_world.GlobalRank, _world.WorldSize, _localRank, _device, _world.Generation, _position.Epoch, _position.GlobalStep);

    /// <summary>Rank 0 writes the checkpoints (every replica holds the same state); a failed write is logged and training goes on.</summary>
    private void SaveCheckpointIfDue(EpochRecord? finishedEpoch)
    {
        if (IsRankZero && _world.Checkpoints is { } checkpoints && checkpoints.Due(_position.GlobalStep, endOfEpoch: finishedEpoch is not null))
            checkpoints.Save(new CheckpointRun(_history, _world.WorldSize, _world.Plan.Seed), CurrentState(), _replica, finishedEpoch);
    }

    private void OnFinish(FinishTrainer f)
    {
        if (!SyncWithSource()) return;
        string? modelPath = null;
        if (IsRankZero)
        {
            Directory.CreateDirectory(f.OutDir);
            modelPath = Path.GetFullPath(Path.Combine(f.OutDir, "model.pth"));
            ModelFiles.SaveStateDict(_replica.Model, modelPath);
            Display(ProgressKinds.Message, _position.StepsInEpoch, double.NaN, $"saved {modelPath}");
        }
        // The last forward left each replica its own statistics: the report's checksum is of rank 0's.
        if (_world.Plan.BroadcastBuffers && !TryCollective(_position.GlobalStep, ct => _replica.BroadcastModuleBuffers(_world.Group, _position.GlobalStep, ct))) return;
        var summary = new TrainerSummary(_world.GlobalRank, _replica.Checksum(), _position.GlobalStep,
            ReportTimings.Median(_computeMs), ReportTimings.Median(_intraMs), ReportTimings.Median(_crossMs), ReportTimings.Median(_stepMs));
        Context.Parent.Tell(new TrainerFinished(_localRank, summary, modelPath, IsRankZero ? _lossCurve.ToArray() : []));
    }

    /// <summary>Rank 0's progress for the person watching: the loss lines, the epoch bar, the accuracy.</summary>
    private void Display(string kind, long stepInEpoch, double loss, string? text)
    {
        var recent = RecentMeanStepMs();
        var samplesPerSecond = recent > 0 ? _world.Plan.BatchSize * _world.Plan.AccumulationSteps * _world.WorldSize * 1000.0 / recent : 0;
        _world.Display.Report(new ProgressEvent(kind, _position.Epoch, _world.Plan.Epochs, stepInEpoch, _stepsThisEpoch, loss, samplesPerSecond, text));
    }

    /// <summary>The mean of the last 20 steps' times (0 before the first): a loop, since the LINQ over doubles cost
    /// the first step's display 6 ms of compilation.</summary>
    private double RecentMeanStepMs()
    {
        var n = Math.Min(20, _stepMs.Count);
        var sum = 0.0;
        for (var i = _stepMs.Count - n; i < _stepMs.Count; i++) sum += _stepMs[i];
        return n == 0 ? 0 : sum / n;
    }

    private static readonly TimeSpan StepEventInterval = TimeSpan.FromMilliseconds(250);
    private long _lastStepEvent;

    /// <summary>Keeps the curve within a message's size: past the cap, every other point is dropped.</summary>
    private void RecordLoss(double loss)
    {
        if (!double.IsFinite(loss)) return;
        _lossCurve.Add(new LossSample(_position.GlobalStep, loss));
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

/// <summary>What a trainer is built with, before it knows its world.</summary>
/// <param name="LocalRank">Its rank among the node's trainers.</param>
/// <param name="Device">Where its replica lives.</param>
/// <param name="IntraOpThreads">libtorch threads until the world says how many trainers share the machine.</param>
/// <param name="BucketSizeBytes">Gradient bucket size until the world's plan gives it.</param>
/// <param name="Seed">Parameter initialisation and sampling seed.</param>
/// <param name="OverlapBackward">Reduce buckets while backward runs (CPU trainers only).</param>
/// <param name="WarmUpBatch">Samples in the warm-up forward/backward before the node registers; 0 for none.</param>
internal sealed record TrainerSetup(int LocalRank, Device Device, int IntraOpThreads, long BucketSizeBytes, int Seed,
    bool OverlapBackward = false, int WarmUpBatch = 0);

/// <summary>The run was ended (by the coordinator, a failure elsewhere or a shutdown) while this trainer waited in a collective.</summary>
internal sealed class TrainingCancelledException() : Exception("the run was cancelled while a collective was in progress");
