using ActorTrain.Cluster.Coordination;
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

    public static ElasticSettings Elastic(QuorumPolicy quorum = QuorumPolicy.Majority, int minSurviving = 1, double timeoutSeconds = 8) => new()
    {
        Enabled = true, RegroupTimeout = TimeSpan.FromSeconds(timeoutSeconds), MinSurvivingNodes = minSurviving, HangReportAfter = TimeSpan.FromSeconds(10),
        Quorum = quorum, Rejoin = true, RejoinTimeout = TimeSpan.FromSeconds(300),
    };

    /// <summary>What a node of a lost coordinator's world brings back when it registers again.</summary>
    public static NodeRejoin Rejoin(long generation, params TrainerHaltState[] trainers) =>
        new(generation, trainers, RunHistory.Empty, new TrainingPlan(2, 16, 42, 10, 1 << 20, false, 1 << 16, "tcp", [], "none", 1), []);

    /// <summary>A consequence by its parts, so that two with the same warnings compare equal (the record compares the lists by reference).</summary>
    public static object Parts(Consequence c) => (c.Step, c.Why, c.ExitCode, c.Graceful, c.Watch, c.Reply, string.Join("\n", c.Warnings), c.Progress);

    public static WorldNode WorldNode(string name, int firstRank, int trainers = 2) =>
        new(name, $"akka.tcp://actortrain@{name}:4053/user/node", "", firstRank, trainers, ["cpu", "cpu"], "");
}
