using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;

namespace ActorTrain.Cluster.Tests.Coordination;

/// <summary>Messages for the coordinator's policy specs; nodes are named by strings, not actor refs.</summary>
internal static class PolicySamples
{
    public const string JobId = "job-a";

    /// <summary>A fixed time for the policies that take the time from their caller.</summary>
    public static readonly DateTime T0 = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    public static RegisterNode Register(string name, int trainers = 2, string fingerprint = "fp-1", CheckpointOffer? checkpoint = null) =>
        new(JobId, ActorTrainSettings.ProtocolVersion, fingerprint, name, trainers, $"akka.tcp://actortrain@{name}:4053/user/node",
            $"akka.tcp://actortrain@{name}:4053/user/actortrain-endpoint", Enumerable.Repeat("cpu", trainers).ToArray(), $"{name}:4054", null, checkpoint);

    public static TrainerHaltState Halt(int rank, long step, bool inFlight = false, bool finished = false, int epoch = 1) =>
        new(rank, new TrainingPosition(step, epoch, step * 16, step, finished, step * 0.5, step, 0), inFlight, 0, $"sha256:{rank}");

    public static NodeHalted Halted(string node, long next, params TrainerHaltState[] trainers) => new(next, node, trainers, $"{node}:5000");

    public static RankProgress Rank(int rank, long step, double currentStepMs = 0, int waitingBucket = -1, double computeMs = 30) =>
        new(rank, step, 40, computeMs, currentStepMs, waitingBucket);

    public static WorldNode WorldNode(string name, int firstRank, int trainers = 2) =>
        new(name, $"akka.tcp://actortrain@{name}:4053/user/node", "", firstRank, trainers, ["cpu", "cpu"], "");
}
