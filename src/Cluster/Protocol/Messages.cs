using System.Text.Json.Serialization;
using MessagePack;

namespace ActorTrain.Cluster.Protocol;

/// <summary>
/// Marker of every message that crosses the wire but <see cref="GradientChunk"/>. The HOCON
/// binding in reference.conf sends all of them through
/// <see cref="Serialization.ActorTrainMessageSerializer"/>; gradient chunks have a binding and a
/// serializer of their own.
/// </summary>
public interface IActorTrainMessage;

/// <summary>Node → coordinator: this node wants to take part. Answered by <see cref="NodeRegistered"/> or <see cref="RegistrationRefused"/>.</summary>
/// <param name="ModelFingerprint">Hash of parameter names, shapes and dtypes: every replica must hold the same model.</param>
/// <param name="NodeActorPath">Full remote path of the node actor (the coordinator talks to it).</param>
/// <param name="EndpointPath">Full remote path of the node's gradient endpoint.</param>
/// <param name="DataPlaneEndpoint">host:port of the node's TCP data-plane listener.</param>
[MessagePackObject]
public sealed record RegisterNode(
    [property: Key(0)] string JobId,
    [property: Key(1)] int ProtocolVersion,
    [property: Key(2)] string ModelFingerprint,
    [property: Key(3)] string NodeName,
    [property: Key(4)] int TrainerCount,
    [property: Key(5)] string NodeActorPath,
    [property: Key(6)] string EndpointPath,
    [property: Key(7)] string[] Devices,
    [property: Key(8)] string DataPlaneEndpoint,
    [property: Key(9)] NodeRejoin? Rejoin,
    [property: Key(10)] CheckpointOffer? Checkpoint,
    [property: Key(11)] string JobSettingsDigest = "") : IActorTrainMessage;

/// <summary>
/// Sent with a registration by a node started with <c>--resume</c>: the newest valid checkpoint
/// it found. The coordinator starts the run from the furthest offer.
/// </summary>
/// <param name="File">The checkpoint's path on that node.</param>
/// <param name="State">The saving trainer's state: where the run was when it was written.</param>
/// <param name="History">The run's history up to then.</param>
[MessagePackObject]
public sealed record CheckpointOffer(
    [property: Key(0)] string File,
    [property: Key(1)] TrainerHaltState State,
    [property: Key(2)] RunHistory History);

/// <summary>
/// Sent with a registration by a node that was already training when its coordinator was lost
/// (the coordinator singleton moved to another seed node): what it held, so the new coordinator
/// can go on from there.
/// </summary>
/// <param name="Generation">The last generation the node took part in.</param>
/// <param name="Trainers">Its trainers' states, halted at a step boundary.</param>
/// <param name="History">The run's history as the old coordinator last sent it.</param>
/// <param name="Plan">The plan the run was using (epochs, batch size, seed, sync settings).</param>
/// <param name="World">The nodes of that generation: the new coordinator waits for those still in the cluster.</param>
[MessagePackObject]
public sealed record NodeRejoin(
    [property: Key(0)] long Generation,
    [property: Key(1)] TrainerHaltState[] Trainers,
    [property: Key(2)] RunHistory History,
    [property: Key(3)] TrainingPlan Plan,
    [property: Key(4)] WorldNode[] World);

[MessagePackObject]
public sealed record NodeRegistered([property: Key(0)] string NodeName, [property: Key(1)] int NodesRegistered, [property: Key(2)] int MinNodes) : IActorTrainMessage;

[MessagePackObject]
public sealed record RegistrationRefused([property: Key(0)] string Reason) : IActorTrainMessage;

/// <summary>One node of a world, in ring order. Its trainers hold global ranks FirstRank..FirstRank+TrainerCount-1.</summary>
[MessagePackObject]
public sealed record WorldNode(
    [property: Key(0)] string NodeName,
    [property: Key(1)] string NodeActorPath,
    [property: Key(2)] string EndpointPath,
    [property: Key(3)] int FirstRank,
    [property: Key(4)] int TrainerCount,
    [property: Key(5)] string[] Devices,
    [property: Key(6)] string DataPlaneEndpoint);

/// <summary>
/// What every replica must agree on (the bucket layout, the transport and its chunking included);
/// the coordinator's configuration decides it. <see cref="DataPlaneToken"/> is fresh for every
/// generation: TCP data-plane peers prove with it that they belong to this world.
/// </summary>
/// <param name="Compression">Format of gradient chunks on the cross-node ring: none | fp16 | bf16 (actortrain.sync.compression).</param>
/// <param name="AccumulationSteps">Micro-batches per optimizer step; gradients are reduced on the last one (actortrain.training.accumulation-steps).</param>
[MessagePackObject]
public sealed record TrainingPlan(
    [property: Key(0)] int Epochs,
    [property: Key(1)] int BatchSize,
    [property: Key(2)] int Seed,
    [property: Key(3)] int LogInterval,
    [property: Key(4)] long BucketSizeBytes,
    [property: Key(5)] bool FailOnNonFinite,
    [property: Key(6)] int ChunkSizeBytes,
    [property: Key(7)] string Transport,
    [property: Key(8)] byte[] DataPlaneToken,
    [property: Key(9)] string Compression,
    [property: Key(10)] int AccumulationSteps,
    [property: Key(11)] bool BroadcastBuffers = true);

/// <summary>
/// Coordinator → nodes: the world of one generation. Nodes set up their rings and answer
/// <see cref="NodeReady"/>. Before its first step the generation makes every replica equal to
/// <see cref="ResumePoint.SourceRank"/>'s, and goes on from the point it names.
/// </summary>
[MessagePackObject]
public sealed record WorldAssignment(
    [property: Key(0)] long Generation,
    [property: Key(1)] WorldNode[] Nodes,
    [property: Key(2)] int WorldSize,
    [property: Key(3)] TrainingPlan Plan,
    [property: Key(4)] ResumePoint Resume,
    [property: Key(5)] RunHistory History) : IActorTrainMessage;

/// <summary>
/// Where a replica stands in the run. The one record of a position: the protocol (halts and
/// resume points), checkpoints and the trainer itself hold this and nothing else.
/// </summary>
/// <param name="GlobalStep">Optimizer steps completed in the run (applied to the parameters); -1 for a replica that has not taken part in one.</param>
/// <param name="Epoch">The epoch in progress (or just finished), from 1.</param>
/// <param name="SamplesDone">Samples of the epoch's shuffled order already trained on (the epoch's cursor).</param>
/// <param name="StepsInEpoch">Steps already taken in the epoch (for the loss lines).</param>
/// <param name="EpochFinished">The epoch is complete; what comes next starts the next one.</param>
/// <param name="LossSum">Sum of the epoch's step losses (each the mean over all replicas) so far.</param>
/// <param name="LossCount">Steps in <see cref="LossSum"/>.</param>
/// <param name="SkippedInEpoch">Steps of the epoch whose update was skipped (a non-finite gradient).</param>
[MessagePackObject]
public sealed record TrainingPosition(
    [property: Key(0)] long GlobalStep,
    [property: Key(1)] int Epoch,
    [property: Key(2)] long SamplesDone,
    [property: Key(3)] long StepsInEpoch,
    [property: Key(4)] bool EpochFinished,
    [property: Key(5)] double LossSum,
    [property: Key(6)] long LossCount,
    [property: Key(7)] int SkippedInEpoch)
{
    /// <summary>A replica that has taken part in no step (and so in no epoch).</summary>
    public static readonly TrainingPosition None = new(-1, 0, 0, 0, false, 0, 0, 0);

    /// <summary>The start of a fresh run: epoch 1, step 0.</summary>
    public static readonly TrainingPosition Start = new(0, 1, 0, 0, false, 0, 0, 0);

    /// <summary>The epoch's mean step loss so far; NaN before any step counted.</summary>
    [IgnoreMember] public double MeanLoss => LossCount > 0 ? LossSum / LossCount : double.NaN;

    /// <summary>Epoch <paramref name="epoch"/> begins: its cursor, step count and loss start over; the run's step goes on.</summary>
    public TrainingPosition BeginEpoch(int epoch) => new(GlobalStep, epoch, 0, 0, false, 0, 0, 0);
}

/// <summary>
/// Where a generation starts: the source rank (in the new world) whose parameters and optimizer
/// state every replica takes, and the position in the run that rank had reached.
/// </summary>
/// <param name="OptimizerStateBytes">Length of the source's serialized optimizer state, broadcast after the parameters (0: none).</param>
/// <param name="CheckpointFile">When not empty, the source first loads its replica from this checkpoint file.</param>
[MessagePackObject]
public sealed record ResumePoint(
    [property: Key(0)] int SourceRank,
    [property: Key(1)] TrainingPosition Position,
    [property: Key(2)] int OptimizerStateBytes,
    [property: Key(3)] string CheckpointFile);

/// <summary>One trainer's state once it stopped for a regroup (or, for a checkpoint, when it was saved).</summary>
/// <param name="Rank">Its global rank in the generation it stopped in.</param>
/// <param name="InFlight">It had computed a step whose reduction was cut off: that step's work is lost.</param>
[MessagePackObject]
public sealed record TrainerHaltState(
    [property: Key(0)] int Rank,
    [property: Key(1)] TrainingPosition Position,
    [property: Key(2)] bool InFlight,
    [property: Key(3)] int OptimizerStateBytes,
    [property: Key(4)] string Checksum);

/// <summary>One generation of the world, as the run report lists it.</summary>
/// <param name="StartStep">Global step the generation started from.</param>
/// <param name="StepsRedone">Steps whose work was lost when the previous generation ended (0 or 1).</param>
/// <param name="RecoverySeconds">From the event that ended the previous generation to this one's first step (0 for the first).</param>
[MessagePackObject]
public sealed record GenerationRecord(
    [property: Key(0), JsonPropertyName("generation")] long Generation,
    [property: Key(1), JsonPropertyName("members")] string[] Members,
    [property: Key(2), JsonPropertyName("world_size")] int WorldSize,
    [property: Key(3), JsonPropertyName("start_step")] long StartStep,
    [property: Key(4), JsonPropertyName("reason")] string Reason,
    [property: Key(5), JsonPropertyName("steps_redone")] int StepsRedone,
    [property: Key(6), JsonPropertyName("recovery_seconds")] double RecoverySeconds);

/// <summary>One finished epoch, as the run report lists it.</summary>
/// <param name="EndStep">The global step the epoch ended at.</param>
/// <param name="Metrics">The job's evaluation metrics by name (null or empty when the epoch was not evaluated);
/// in run-report.json they stand beside the other fields under their own names. Key 3 held a single
/// accuracy in checkpoints of earlier builds; it is no longer read.</param>
[MessagePackObject]
public sealed record EpochRecord(
    [property: Key(0), JsonPropertyName("epoch")] int Epoch,
    [property: Key(1), JsonPropertyName("end_step")] long EndStep,
    [property: Key(2), JsonPropertyName("mean_loss")] double MeanLoss,
    [property: Key(4), JsonPropertyName("skipped_steps")] int SkippedSteps,
    [property: Key(5), JsonIgnore] Dictionary<string, double>? Metrics)
{
    private Dictionary<string, object>? _metricsJson;

    /// <summary>The metrics; for a record read back from run-report.json, those found beside its fields.</summary>
    [IgnoreMember, JsonIgnore]
    public IReadOnlyDictionary<string, double> MetricsOrEmpty =>
        Metrics is { } metrics ? metrics : _metricsJson is { } json ? Coordination.JobMetrics.FromJson(json) : new Dictionary<string, double>();

    // The JSON reader fills the dictionary the getter hands it; the writer writes what it holds.
    [IgnoreMember, JsonExtensionData]
    public Dictionary<string, object> MetricsJson
    {
        get => _metricsJson ??= Coordination.JobMetrics.ToJson(Metrics ?? []);
        init => _metricsJson = value;
    }

    // Metrics compare by content (a record would compare the dictionaries by reference); a null and an empty set are equal.
    public bool Equals(EpochRecord? other) =>
        other is not null && Epoch == other.Epoch && EndStep == other.EndStep && MeanLoss.Equals(other.MeanLoss) && SkippedSteps == other.SkippedSteps &&
        MetricsOrEmpty.Count == other.MetricsOrEmpty.Count &&
        MetricsOrEmpty.All(m => other.MetricsOrEmpty.TryGetValue(m.Key, out var v) && v.Equals(m.Value));

    public override int GetHashCode() => HashCode.Combine(Epoch, EndStep, MeanLoss, SkippedSteps, MetricsOrEmpty.Count);
}

/// <summary>What the coordinator knows of the run so far; nodes keep the latest copy so a new coordinator can take over.</summary>
[MessagePackObject]
public sealed record RunHistory(
    [property: Key(0)] GenerationRecord[] Generations,
    [property: Key(1)] EpochRecord[] Epochs,
    [property: Key(2)] double WallSeconds)
{
    public static readonly RunHistory Empty = new([], [], 0);
}

/// <summary>
/// Coordinator → nodes of generation <see cref="Generation"/>: stop at a step boundary and report
/// (<see cref="NodeHalted"/>) for <see cref="NextGeneration"/>. Graceful (a node joins): every
/// replica finishes the same step, agreed inside the gradient reduction. Not graceful (a node was
/// lost): the step in flight is dropped.
/// </summary>
[MessagePackObject]
public sealed record Regroup(
    [property: Key(0)] long Generation,
    [property: Key(1)] long NextGeneration,
    [property: Key(2)] bool Graceful,
    [property: Key(3)] string Reason) : IActorTrainMessage;

/// <summary>Node → coordinator: its trainers have stopped; here are their states and the node's new data-plane address.</summary>
[MessagePackObject]
public sealed record NodeHalted(
    [property: Key(0)] long NextGeneration,
    [property: Key(1)] string NodeName,
    [property: Key(2)] TrainerHaltState[] Trainers,
    [property: Key(3)] string DataPlaneEndpoint) : IActorTrainMessage;

/// <summary>Node → coordinator: a collective of this generation failed (a neighbour's connection broke, a deadline passed).</summary>
/// <param name="Suspect">The node whose data-plane connection broke, when known (else empty): the coordinator waits for it only briefly.</param>
[MessagePackObject]
public sealed record GenerationBroken(
    [property: Key(0)] long Generation,
    [property: Key(1)] string NodeName,
    [property: Key(2)] string Reason,
    [property: Key(3)] string Suspect) : IActorTrainMessage;

/// <summary>Coordinator → nodes: the run's history after a change (an epoch or a generation).</summary>
[MessagePackObject]
public sealed record HistoryUpdate([property: Key(0)] RunHistory History) : IActorTrainMessage;

/// <summary>Node → coordinator: the node's rings are set up; rank 0's parameters are broadcast at the start of epoch 1.</summary>
[MessagePackObject]
public sealed record NodeReady([property: Key(0)] long Generation, [property: Key(1)] string NodeName) : IActorTrainMessage;

[MessagePackObject]
public sealed record StartEpoch([property: Key(0)] long Generation, [property: Key(1)] int Epoch) : IActorTrainMessage;

/// <summary>Node → coordinator: the node's trainers finished an epoch.</summary>
/// <param name="Metrics">The job's evaluation metrics by name, from the node that holds rank 0; empty elsewhere and when not measured.</param>
[MessagePackObject]
public sealed record EpochCompleted(
    [property: Key(0)] long Generation,
    [property: Key(1)] string NodeName,
    [property: Key(2)] int Epoch,
    [property: Key(3)] long Steps,
    [property: Key(4)] double LossSum,
    [property: Key(5)] long LossCount,
    [property: Key(6)] int SkippedSteps,
    [property: Key(7)] Dictionary<string, double> Metrics) : IActorTrainMessage;

/// <summary>A trainer found a non-finite value in its own gradient; it did not enter the average.</summary>
[MessagePackObject]
public sealed record NonFiniteGradientReported(
    [property: Key(0)] long Generation,
    [property: Key(1)] long Step,
    [property: Key(2)] int Rank,
    [property: Key(3)] string NodeName,
    [property: Key(4)] int NonFiniteCount) : IActorTrainMessage;

[MessagePackObject]
public sealed record FinishTraining([property: Key(0)] long Generation) : IActorTrainMessage;

/// <summary>Medians over one trainer's steps, in milliseconds.</summary>
[MessagePackObject]
public sealed record TrainerSummary(
    [property: Key(0)] int Rank,
    [property: Key(1)] string Checksum,
    [property: Key(2)] long Steps,
    [property: Key(3)] double ComputeMs,
    [property: Key(4)] double IntraNodeMs,
    [property: Key(5)] double CrossNodeMs,
    [property: Key(6)] double StepMs);

/// <summary>One point of rank 0's loss curve: the mean loss over all replicas of the log window ending at Step.</summary>
[MessagePackObject]
public sealed record LossSample([property: Key(0)] long Step, [property: Key(1)] double Loss);

/// <summary>Node → coordinator: final state of each of the node's trainers; rank 0's node has written the model.</summary>
/// <param name="LossCurve">Rank 0's logged losses (empty on other nodes), at most a few thousand points.</param>
[MessagePackObject]
public sealed record NodeFinished(
    [property: Key(0)] long Generation,
    [property: Key(1)] string NodeName,
    [property: Key(2)] TrainerSummary[] Trainers,
    [property: Key(3)] string? ModelPath,
    [property: Key(4)] LossSample[] LossCurve) : IActorTrainMessage;

/// <summary>Where one trainer is, as its node last saw it.</summary>
/// <param name="Step">Steps this rank has completed.</param>
/// <param name="RecentStepMs">Mean wall time of its last steps.</param>
/// <param name="RecentComputeMs">Mean compute time of its last steps (the step less its waits in collectives): its own speed, before waiting for others.</param>
/// <param name="CurrentStepMs">How long the step in progress has been running (0 between steps).</param>
/// <param name="WaitingBucket">The bucket whose reduction it is waiting in; -1 when it is not in a reduction.</param>
[MessagePackObject]
public sealed record RankProgress(
    [property: Key(0)] int Rank,
    [property: Key(1)] long Step,
    [property: Key(2)] double RecentStepMs,
    [property: Key(3)] double RecentComputeMs,
    [property: Key(4)] double CurrentStepMs,
    [property: Key(5)] int WaitingBucket);

/// <summary>Node → coordinator, every few seconds while training: its trainers' progress.</summary>
[MessagePackObject]
public sealed record NodeProgress(
    [property: Key(0)] long Generation,
    [property: Key(1)] string NodeName,
    [property: Key(2)] int Epoch,
    [property: Key(3)] RankProgress[] Ranks) : IActorTrainMessage;

/// <summary>Client → coordinator (through the cluster client receptionist): what is the cluster doing?</summary>
[MessagePackObject]
public sealed record GetStatus([property: Key(0)] string RequestId) : IActorTrainMessage;

[MessagePackObject]
public sealed record NodeStatus(
    [property: Key(0)] string NodeName,
    [property: Key(1)] string Address,
    [property: Key(2)] int FirstRank,
    [property: Key(3)] int TrainerCount,
    [property: Key(4)] string[] Devices,
    [property: Key(5)] long Step,
    [property: Key(6)] double StepsPerSecond,
    [property: Key(7)] double SecondsSinceReport);

/// <summary>A rank that the others are waiting for: behind on steps, or in a step for much longer than usual.</summary>
[MessagePackObject]
public sealed record LateRank(
    [property: Key(0)] int Rank,
    [property: Key(1)] string NodeName,
    [property: Key(2)] long Step,
    [property: Key(3)] long StepsBehind,
    [property: Key(4)] double CurrentStepMs);

/// <summary>Coordinator → client: the world as the coordinator sees it.</summary>
/// <param name="SlowestRank">Rank with the longest recent compute time; -1 when unknown.</param>
/// <param name="Straggler">The rank that holds the others up (see <see cref="Coordination.Stragglers"/>); empty when none stands out.</param>
[MessagePackObject]
public sealed record ClusterStatus(
    [property: Key(0)] string RequestId,
    [property: Key(1)] string JobId,
    [property: Key(2)] string Phase,
    [property: Key(3)] long Generation,
    [property: Key(4)] int Epoch,
    [property: Key(5)] int Epochs,
    [property: Key(6)] int WorldSize,
    [property: Key(7)] NodeStatus[] Nodes,
    [property: Key(8)] int SlowestRank,
    [property: Key(9)] double SlowestComputeMs,
    [property: Key(10)] LateRank[] LateRanks,
    [property: Key(11)] int RegisteredNodes,
    [property: Key(12)] int MinNodes,
    [property: Key(13)] string Straggler) : IActorTrainMessage;

/// <summary>Coordinator → nodes: the run is over (successfully when ExitCode is 0); leave the cluster and exit.</summary>
[MessagePackObject]
public sealed record EndRun([property: Key(0)] int ExitCode, [property: Key(1)] string Reason) : IActorTrainMessage;

/// <summary>
/// Coordinator → a node that is alive but not in generation <see cref="Generation"/> (it did not
/// answer the regroup in time, or its side of a partition was cut off). With
/// actortrain.elastic.rejoin on it comes back as a new member; otherwise it exits 3.
/// </summary>
[MessagePackObject]
public sealed record LeftOut([property: Key(0)] long Generation, [property: Key(1)] string Reason) : IActorTrainMessage;

/// <summary>
/// Node → coordinator: this node was asked to stop (SIGTERM). The coordinator ends the generation
/// gracefully, so every replica stops after the same step, and forms the next one without it.
/// </summary>
[MessagePackObject]
public sealed record NodeLeaving([property: Key(0)] string NodeName, [property: Key(1)] string Reason) : IActorTrainMessage;

/// <summary>
/// Node → coordinator: this node cannot go on. With elastic training on the others go on without
/// it (as after a crash); otherwise the coordinator ends the run on every node.
/// </summary>
[MessagePackObject]
public sealed record NodeFailed([property: Key(0)] string NodeName, [property: Key(1)] string Reason) : IActorTrainMessage;

/// <summary>
/// One chunk of a ring all-reduce, node to node: the chunk's key, the sender's ring position and
/// the float32 values. Not MessagePack: <see cref="Serialization.GradientChunkSerializer"/> writes
/// it as a fixed header followed by the raw floats, so tensor bytes are copied, never re-encoded.
/// The message owns <see cref="Data"/>: nobody may write to that memory once it is sent.
/// </summary>
public sealed record GradientChunk(
    long Generation,
    long Step,
    int Bucket,
    int Lane,
    int RingStep,
    int Chunk,
    int FromPeer,
    ReadOnlyMemory<float> Data)
{
    /// <summary>The chunk's place in its ring all-reduce, the key a receive matches.</summary>
    internal Sync.Transport.ChunkKey Key => new(Generation, Step, Bucket, Lane, RingStep, Chunk);
}
