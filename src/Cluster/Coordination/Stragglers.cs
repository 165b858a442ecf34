using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// Which rank holds the others up: the one whose recent compute time (its own work per step, the
/// waits in collectives left out) is at least <see cref="Ratio"/> times the median of the other ranks'. In data-parallel training every step
/// waits for the slowest replica, so one slow machine sets the pace of all.
/// </summary>
internal static class Stragglers
{
    /// <summary>How much slower than the others' median a rank must be to be called the straggler.</summary>
    public const double Ratio = 1.5;

    /// <summary>The straggler among the latest progress of each node, or null when no rank stands out.</summary>
    public static Straggler? Find(IEnumerable<(string Node, RankProgress Rank)> ranks)
    {
        var known = ranks.Where(r => r.Rank.RecentComputeMs > 0).OrderByDescending(r => r.Rank.RecentComputeMs).ToList();
        if (known.Count < 2) return null;
        var others = known.Skip(1).Select(r => r.Rank.RecentComputeMs).Order().ToList();
        var median = others.Count % 2 == 1 ? others[others.Count / 2] : (others[others.Count / 2 - 1] + others[others.Count / 2]) / 2;
        var slowest = known[0];
        var ratio = slowest.Rank.RecentComputeMs / median;
        return ratio >= Ratio ? new Straggler(slowest.Node, slowest.Rank.Rank, slowest.Rank.RecentComputeMs, ratio) : null;
    }
}

/// <summary>
/// A rank that holds the others up. Published on the coordinator's event stream when it changes
/// (null node: none any more), for the metrics of the coordinator's node.
/// </summary>
internal sealed record Straggler(string Node, int Rank, double ComputeMs, double Ratio)
{
    public override string ToString() =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"rank {Rank} on node {Node} ({ComputeMs:F1} ms per step, {Ratio:F1}x the others' median)");
}

/// <summary>The straggler changed: <see cref="Current"/> is null when no rank stands out any more.</summary>
internal sealed record StragglerChanged(Straggler? Current);
