using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Tests.Serialization;

/// <summary>
/// Wire messages with a distinct, non-default value in every field, so a field the serializer
/// loses or mixes up shows in a round trip; plus edge cases (nulls, empty arrays, extreme numbers).
/// </summary>
internal static class Samples
{
    private static readonly WorldNode NodeA = new("node-a", "akka.tcp://actortrain@10.0.0.1:4053/user/node", "akka.tcp://actortrain@10.0.0.1:4053/user/actortrain-endpoint", 0, 2, ["cpu", "cpu"], "10.0.0.1:4054");
    private static readonly WorldNode NodeB = new("node-b", "akka.tcp://actortrain@10.0.0.2:4053/user/node", "akka.tcp://actortrain@10.0.0.2:4053/user/actortrain-endpoint", 2, 2, ["cuda:0", "cuda:1"], "10.0.0.2:4054");

    private static readonly TrainingPlan Plan = new(10, 64, -3, 100, 4 << 20, true, 32 * 1024, "tcp", [7, 1, 255], "bf16", 4);

    private static readonly TrainerHaltState Halt = new(3, new TrainingPosition(158, 4, 1280, 20, true, 41.5, 20, 1), true, 377, "c0ffee");

    private static readonly RunHistory History = new(
        [new GenerationRecord(1, ["node-a", "node-b"], 4, 0, "start", 0, 0), new GenerationRecord(2, ["node-a"], 2, 157, "node node-b was lost", 1, 2.5)],
        [new EpochRecord(1, 70, 1.25, 2, new() { ["test_accuracy"] = 0.875 })], 33.5);

    private static readonly NodeRejoin Rejoin = new(7, [Halt], History, Plan, [NodeA, NodeB]);

    /// <summary>One message per wire type, every field set to something other than its default.</summary>
    public static readonly IReadOnlyDictionary<Type, object> Full = new object[]
    {
        new RegisterNode("mnist", 1, "fp-9c1e", "node-a", 2, "akka.tcp://actortrain@10.0.0.1:4053/user/node", "akka.tcp://actortrain@10.0.0.1:4053/user/actortrain-endpoint", ["cpu", "cpu"], "10.0.0.1:4054", Rejoin, new CheckpointOffer("/data/ckpt/ckpt-000000158.atc", Halt, History), "9f2c4e1d0a7b3c55"),
        new NodeRegistered("node-a", 1, 3),
        new RegistrationRefused("job id \"x\" differs from the coordinator's \"y\""),
        new WorldAssignment(7, [NodeA, NodeB], 4, Plan, new ResumePoint(3, new TrainingPosition(158, 4, 1280, 20, true, 41.5, 20, 1), 377, "ckpt/ckpt-000000158.atc"), History),
        new NodeReady(7, "node-b"),
        new StartEpoch(7, 3),
        new EpochCompleted(7, "node-a", 3, 938, 123.456, 60032, 2, new() { ["test_accuracy"] = 0.9871, ["test_loss"] = 0.25 }),
        new NonFiniteGradientReported(7, 4711, 3, "node-b", 12),
        new FinishTraining(7),
        new NodeFinished(7, "node-a", [new TrainerSummary(0, "sha256:ab", 9380, 11.5, 0.75, 3.25, 15.5), new TrainerSummary(1, "sha256:ab", 9380, 12.5, 0.5, 3.5, 16.25)], "out/model.pth", [new LossSample(100, 2.25), new LossSample(200, 1.125)]),
        new EndRun(3, "node node-b was lost"),
        new NodeFailed("node-b", "CUDA out of memory"),
        new LeftOut(7, "did not answer the regroup within 8s"),
        new NodeLeaving("node-c", "terminated (SIGTERM)"),
        new NodeProgress(7, "node-a", 3, [new RankProgress(0, 120, 41.5, 30.25, 12.5, -1), new RankProgress(1, 119, 42.5, 31.25, 2500.5, 3)]),
        new GetStatus("req-1"),
        new ClusterStatus("req-1", "mnist", "training", 7, 3, 10, 4,
            [new NodeStatus("node-a", "akka.tcp://actortrain@10.0.0.1:4053", 0, 2, ["cpu", "cpu"], 120, 23.5, 1.25)],
            1, 31.25, [new LateRank(1, "node-a", 119, 1, 2500.5)], 2, 3, "rank 1 on node node-a (31.2 ms per step, 1.6x the others' median)"),
        new Regroup(7, 8, true, "node node-c joins"),
        new NodeHalted(8, "node-b", [Halt], "10.0.0.2:4999"),
        new GenerationBroken(7, "node-a", "the data plane failed at step 158", "node-b"),
        new HistoryUpdate(History),
    }.ToDictionary(m => m.GetType());

    /// <summary>Edge cases that must survive a round trip too.</summary>
    public static IEnumerable<object> Edges()
    {
        yield return new NodeFinished(1, "node-b", [], null, []);
        yield return new ClusterStatus("", "", "waiting-for-nodes", 0, 0, 10, 0, [], -1, 0, [], 0, 1, "");
        yield return new WorldAssignment(1, [], 0, new TrainingPlan(1, 1, 0, 1, 1024, false, 1024, "akka", [], "none", 1), new ResumePoint(0, new TrainingPosition(0, 1, 0, 0, false, 0, 0, 0), 0, ""), RunHistory.Empty);
        yield return new RegisterNode("", 1, "", "", 1, "", "", [], "", null, null);
        yield return new EpochCompleted(long.MaxValue, "n", int.MaxValue, long.MaxValue, double.NaN, 0, 0, []);
        yield return new EpochCompleted(-1, "n", 0, 0, double.PositiveInfinity, 0, 0, new() { ["m"] = double.NegativeInfinity });
        yield return new RegistrationRefused("ünïcødé — “quoted” \0 nul");
    }
}
