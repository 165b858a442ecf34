using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Coordination;

/// <summary>A step stuck in its reduction: who waits (and in which buckets), for how long, and who is missing.</summary>
internal sealed record HangReport(long Step, double WaitedSeconds, string Waiting, string Buckets, string Missing);

/// <summary>
/// Finds a stuck collective and the nodes to blame. A step whose ranks have waited in a reduction past
/// <c>hang-report-after</c> is reported, naming the ranks that wait and those they wait for (behind,
/// outside the reduction, or silent); at most one report per <c>hang-report-after</c>. Pure: the caller
/// gives the time.
/// </summary>
internal sealed class HangDetector(TimeSpan reportAfter)
{
    /// <summary>A node whose progress report is older than this is taken as silent.</summary>
    public static readonly TimeSpan SilentAfter = TimeSpan.FromSeconds(5);

    private DateTime _lastReport = DateTime.MinValue;

    /// <summary>The hang to report now; null when no step is stuck or one was reported less than hang-report-after ago.</summary>
    public HangReport? Check(ProgressTracker progress, IEnumerable<WorldNode> world, DateTime now)
    {
        if (now - _lastReport < reportAfter) return null;
        var waiting = progress.Ranks.Where(x => x.Rank.WaitingBucket >= 0 && x.Rank.CurrentStepMs > reportAfter.TotalMilliseconds).ToList();
        if (waiting.Count == 0) return null;
        var step = waiting.Max(w => w.Rank.Step);
        var missing = new List<string>();
        foreach (var node in world)
        {
            if (!progress.TryGet(node.NodeName, out var p) || now - p.At > SilentAfter)
            {
                var age = p is null ? "never" : $"{(now - p.At).TotalSeconds:0}s ago";
                missing.Add($"ranks {node.FirstRank}..{node.FirstRank + node.TrainerCount - 1} on node {node.NodeName} (no progress report since {age})");
                continue;
            }
            foreach (var r in p.Latest.Ranks.Where(r => r.WaitingBucket < 0 || r.Step < step))
                missing.Add($"rank {r.Rank} on node {node.NodeName} ({(r.Step < step ? $"at step {r.Step}" : "not in the reduction")})");
        }
        _lastReport = now;
        return new HangReport(step, waiting.Max(w => w.Rank.CurrentStepMs) / 1000,
            string.Join(", ", waiting.Select(w => $"rank {w.Rank.Rank} ({w.Node})")),
            string.Join(",", waiting.Select(w => w.Rank.WaitingBucket).Distinct().Order()),
            missing.Count > 0 ? string.Join("; ", missing) : "none found (a slow network?)");
    }
}
