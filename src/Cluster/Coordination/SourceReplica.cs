using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// The replica a generation continues from. <paramref name="Node"/> is null for a fresh start (no
/// replica has taken a step); <paramref name="Resume"/> is its position, its source rank set when
/// the world is ranked.
/// </summary>
/// <param name="LocalRank">The source's trainer index on its node.</param>
/// <param name="StepsRedone">1 when a replica had computed the source's next step and lost it with the regroup.</param>
internal sealed record SourceChoice(string? Node, int LocalRank, ResumePoint Resume, int StepsRedone);

/// <summary>
/// Which replica every replica of the next generation takes its parameters and position from: the one
/// that got furthest; a tie goes to one whose last step completed, then to the lowest rank.
/// </summary>
internal static class SourceReplica
{
    public static ResumePoint FreshStart { get; } = new(0, TrainingPosition.Start, 0, "");

    /// <summary>Going on from a trainer's state (its source rank is set when the world is ranked).</summary>
    public static ResumePoint ResumeFrom(TrainerHaltState s, string checkpointFile) =>
        new(0, s.Position, s.OptimizerStateBytes, checkpointFile);

    /// <summary>The furthest replica among the nodes' halted states; null when they hold no trainer state at all.</summary>
    public static SourceChoice? Choose(IEnumerable<NodeHalted> halts)
    {
        var states = halts.SelectMany(h => h.Trainers.Select((t, local) => (h.NodeName, Local: local, State: t))).ToList();
        if (states.Count == 0) return null;
        var source = states.OrderByDescending(s => s.State.Position.GlobalStep).ThenBy(s => s.State.InFlight).ThenBy(s => s.State.Rank).First();
        var s = source.State;
        var redone = states.Any(x => x.State.InFlight && x.State.Position.GlobalStep == s.Position.GlobalStep) ? 1 : 0;
        return s.Position.GlobalStep < 0 ? new SourceChoice(null, 0, FreshStart, redone) : new SourceChoice(source.NodeName, source.Local, ResumeFrom(s, ""), redone);
    }

    /// <summary>A run that starts from nothing: every replica keeps its initial parameters (rank 0's, all equal).</summary>
    public static SourceChoice Fresh { get; } = new(null, 0, FreshStart, 0);

    /// <summary>--resume: the furthest checkpoint any node offered; null when none offers one.</summary>
    public static (SourceChoice Source, CheckpointOffer Offer)? FromCheckpoint<TNode>(IEnumerable<Registration<TNode>> nodes) where TNode : notnull
    {
        var offer = nodes.Where(m => m.Message.Checkpoint is not null).OrderByDescending(m => m.Message.Checkpoint!.State.Position.GlobalStep).FirstOrDefault();
        if (offer is null) return null;
        var c = offer.Message.Checkpoint!;
        return (new SourceChoice(offer.Name, 0, ResumeFrom(c.State, c.File), 0), c);
    }
}
