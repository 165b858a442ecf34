using MessagePack;

namespace ActorTrain.Cluster.Protocol;

/// <summary>
/// Marker of every message that crosses the wire. The HOCON binding in reference.conf sends
/// all of them through <see cref="Serialization.ActorTrainMessageSerializer"/>.
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
    [property: Key(8)] string DataPlaneEndpoint) : IActorTrainMessage;

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
    [property: Key(8)] byte[] DataPlaneToken);

/// <summary>Coordinator → nodes: the world of one generation. Nodes set up their rings and answer <see cref="NodeReady"/>.</summary>
[MessagePackObject]
public sealed record WorldAssignment(
    [property: Key(0)] long Generation,
    [property: Key(1)] WorldNode[] Nodes,
    [property: Key(2)] int WorldSize,
    [property: Key(3)] TrainingPlan Plan) : IActorTrainMessage;

/// <summary>Node → coordinator: the node's rings are set up; rank 0's parameters are broadcast at the start of epoch 1.</summary>
[MessagePackObject]
public sealed record NodeReady([property: Key(0)] long Generation, [property: Key(1)] string NodeName) : IActorTrainMessage;

[MessagePackObject]
public sealed record StartEpoch([property: Key(0)] long Generation, [property: Key(1)] int Epoch) : IActorTrainMessage;

/// <summary>Node → coordinator: the node's trainers finished an epoch.</summary>
/// <param name="TestAccuracy">Held-out accuracy, from the node that holds rank 0; negative when not measured.</param>
[MessagePackObject]
public sealed record EpochCompleted(
    [property: Key(0)] long Generation,
    [property: Key(1)] string NodeName,
    [property: Key(2)] int Epoch,
    [property: Key(3)] long Steps,
    [property: Key(4)] double LossSum,
    [property: Key(5)] long LossCount,
    [property: Key(6)] int SkippedSteps,
    [property: Key(7)] double TestAccuracy) : IActorTrainMessage;

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
/// <param name="RecentComputeMs">Mean forward/backward time of its last steps: its own speed, before waiting for others.</param>
/// <param name="CurrentStepMs">How long the step in progress has been running (0 between steps).</param>
[MessagePackObject]
public sealed record RankProgress(
    [property: Key(0)] int Rank,
    [property: Key(1)] long Step,
    [property: Key(2)] double RecentStepMs,
    [property: Key(3)] double RecentComputeMs,
    [property: Key(4)] double CurrentStepMs);

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
    [property: Key(12)] int MinNodes) : IActorTrainMessage;

/// <summary>Coordinator → nodes: the run is over (successfully when ExitCode is 0); leave the cluster and exit.</summary>
[MessagePackObject]
public sealed record EndRun([property: Key(0)] int ExitCode, [property: Key(1)] string Reason) : IActorTrainMessage;

/// <summary>Node → coordinator: this node cannot go on; the coordinator ends the run on every node.</summary>
[MessagePackObject]
public sealed record NodeFailed([property: Key(0)] string NodeName, [property: Key(1)] string Reason) : IActorTrainMessage;

/// <summary>
/// One chunk of a ring all-reduce, node to node. <see cref="Payload"/> holds little-endian float32 values.
/// </summary>
[MessagePackObject]
public sealed record GradientChunk(
    [property: Key(0)] long Generation,
    [property: Key(1)] long Step,
    [property: Key(2)] int Bucket,
    [property: Key(3)] int Lane,
    [property: Key(4)] int RingStep,
    [property: Key(5)] int Chunk,
    [property: Key(6)] int FromPeer,
    [property: Key(7)] byte[] Payload) : IActorTrainMessage;
