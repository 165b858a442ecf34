using ActorTrain.Cluster;
using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using ActorTrain.TrainerActors.DataPlane;
using ActorTrain.TrainerActors.Hosting;
using Akka.Actor;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// Why a node ends on its own: the process exit code (<see cref="ExitCodes"/>), the line a person
/// reads (shown as <c>error: …</c>), and the short reason the run's outcome records.
/// </summary>
internal sealed record NodeEnd(int ExitCode, string Line, string Reason)
{
    /// <summary>The node cannot start (port taken, no CUDA, no NCCL…): a configuration error, not worth restarting into.</summary>
    public static NodeEnd CannotStart(string node, Exception e) =>
        new(ExitCodes.BadConfiguration, $"node {node} cannot start: {e.Message}", $"cannot start: {e.Message}");

    public static NodeEnd CannotResume(string node, Exception e) =>
        new(ExitCodes.BadConfiguration, $"node {node} cannot resume: {e.Message}", $"cannot resume: {e.Message}");

    /// <summary>No coordinator answered the registration within the startup (or rejoin) timeout.</summary>
    public static NodeEnd Unanswered(string node, ActorTrainSettings settings, bool rejoining, ICollection<string> seeds)
    {
        var waited = $"{settings.StartupTimeout.TotalSeconds:0}s";
        if (rejoining)
            return new(ExitCodes.NodeLost, $"node {node}: could not rejoin the cluster within {waited} (actortrain.elastic.rejoin-timeout)", "could not rejoin the cluster");
        return new(ExitCodes.BadConfiguration, $"node {node}: no coordinator answered within {waited} (actortrain.startup-timeout); is a seed node of job \"{settings.JobId}\" " +
            $"running at {(seeds.Count > 0 ? string.Join(", ", seeds) : "the configured seed nodes")}?", "no coordinator answered");
    }

    /// <summary>
    /// The coordinator refused the node. Coming back after being left out, or to a coordinator that
    /// went on without this node, is no configuration error; a node that trained before counts as left out.
    /// </summary>
    public static NodeEnd Refused(string node, string reason, bool trainedBefore, NodeSession session)
    {
        if (trainedBefore) session.LeftOut = true;
        return new(trainedBefore || session.Rejoining ? ExitCodes.NodeLost : ExitCodes.BadConfiguration, $"the coordinator refused node {node}: {reason}", $"refused: {reason}");
    }

    /// <summary>The coordinator went on without this node (the session records it, so the runner may rejoin).</summary>
    public static NodeEnd LeftOut(string node, string reason, NodeSession session)
    {
        session.LeftOut = true;
        return new(ExitCodes.NodeLost, $"node {node}: {reason}", reason);
    }

    public static NodeEnd SeedLost(string node, Address seed, string how, bool noSeedLeft) =>
        new(ExitCodes.NodeLost, $"node {node}: the seed node {seed} is {how}; the coordinator is gone" + (noSeedLeft ? " and no other seed node is up" : ""),
            $"the seed node {seed} is {how}");

    /// <summary>Why a trainer that threw stops the node.</summary>
    public static string TrainerFailure(Exception e, NodeDataPlane? dataPlane, WorldAssignment? world) => e switch
    {
        TimeoutException => e.Message,
        IOException when dataPlane?.UsesTcp == true => $"lost the TCP data plane to a ring neighbour ({dataPlane.NeighbourNames(world)}): {e.Message}",
        _ => $"{e.GetType().Name}: {e.Message}",
    };
}
