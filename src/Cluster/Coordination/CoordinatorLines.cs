using ActorTrain.Cluster.Hosting;
using ActorTrain.Cluster.Protocol;
using Akka.Actor;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// The coordinator's progress lines, the ones a person running a job reads (registration, generations,
/// epochs, regroups, the quorum, the end of the run), formatted as <see cref="ProgressLine"/> formats
/// them. Tests, scripts and the operations guide look for some of their words: keep them as they are.
/// </summary>
internal static class CoordinatorLines
{
    public static string Started(Address self, int minNodes, string jobId) =>
        ProgressLine.Format("Coordinator started on {0}; waiting for {1} node(s) of job \"{2}\"", self, minNodes, jobId);

    public static string Registered(RegisterNode r, int registered, int minNodes) =>
        ProgressLine.Format("Node {0} registered ({1} trainer(s) on {2}); {3}/{4} node(s)", r.NodeName, r.TrainerCount, string.Join(",", r.Devices), registered, minNodes);

    public static string RegisteredMidRun(RegisterNode r) =>
        ProgressLine.Format("Node {0} registered mid-run ({1} trainer(s) on {2}); it joins at the next step boundary", r.NodeName, r.TrainerCount, string.Join(",", r.Devices));

    public static string Resuming(CheckpointOffer c, string? node) =>
        ProgressLine.Format("Resuming from checkpoint {0} on node {1}: step {2}, epoch {3}", c.File, node, c.State.Position.GlobalStep, c.State.Position.Epoch);

    public static string TakingOver(long generation, string jobId, Address self, TimeSpan regroupTimeout, IEnumerable<string> nodes) =>
        ProgressLine.Format("Coordinator taking over generation {0} of job \"{1}\" on {2}; waiting up to {3:0}s for its nodes ({4}) to report",
            generation, jobId, self, regroupTimeout.TotalSeconds, string.Join(", ", nodes));

    public static string GenerationFormed(WorldAssignment world) =>
        ProgressLine.Format("Generation {0}: world size {1} on {2} node(s), gradients over {4}: {3}", world.Generation, world.WorldSize, world.Nodes.Length,
            string.Join(", ", world.Nodes.Select(n => $"{n.NodeName} (ranks {n.FirstRank}..{n.FirstRank + n.TrainerCount - 1})")), world.Plan.Transport);

    /// <summary>A generation after the first trains: from where, how long after the event that ended the last one (<paramref name="recoverySeconds"/>).</summary>
    public static string GenerationTrains(WorldAssignment world, double recoverySeconds, GenerationRecord record) =>
        ProgressLine.Format("Generation {0} trains from step {1} (epoch {2}), {3:0.0}s after {4}; {5} step(s) redone",
            world.Generation, world.Resume.Position.GlobalStep, world.Resume.Position.Epoch, recoverySeconds, record.Reason, record.StepsRedone);

    public static string EpochDone(EpochRecord e, int epochs) =>
        ProgressLine.Format("Epoch {0}/{1} done: mean training loss {2:F4}{3}{4}", e.Epoch, epochs, e.MeanLoss,
            JobMetrics.Describe(e.MetricsOrEmpty), e.SkippedSteps > 0 ? $", {e.SkippedSteps} step(s) skipped" : "");

    public static string RunComplete(RunReport report, string where) =>
        ProgressLine.Format("Run complete: {0} steps{1}, replicas {2}; report at {3}",
            report.Steps, JobMetrics.Describe(report.Metrics), report.ReplicasEqual ? "bitwise equal" : "DIFFER", where);

    public static string Regrouping(long generation, string reason, TimeSpan regroupTimeout, int nodes) =>
        ProgressLine.Format("Regrouping for generation {0}: {1}; waiting up to {2:0}s for {3} node(s) to stop at a step boundary",
            generation, reason, regroupTimeout.TotalSeconds, nodes);

    public static string Leaving(string node, string reason) =>
        ProgressLine.Format("Node {0} is leaving ({1}); the others stop after the same step and go on without it", node, reason);

    public static string QuorumLost(string lacking) =>
        ProgressLine.Format("Quorum lost: {0}; training stops on this side until the network heals", lacking);

    public static string QuorumRegained(long generation, int nodes) =>
        ProgressLine.Format("Quorum regained for generation {0}: {1} node(s) of the previous generation are seen again", generation, nodes);

    public static string Ending(string reason) => ProgressLine.Format("Ending the run: {0}", reason);
}
