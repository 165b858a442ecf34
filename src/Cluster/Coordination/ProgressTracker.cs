using System.Diagnostics.CodeAnalysis;
using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Coordination;

/// <summary>One node as <c>status</c> lists it: its first rank is -1 before the world is ranked.</summary>
internal sealed record StatusMember(string Name, int FirstRank, int Trainers, string[] Devices, string Address);

/// <summary>The progress part of <c>status</c>: each node's step and speed, the slowest rank (-1: unknown), the late ranks.</summary>
internal sealed record ProgressView(NodeStatus[] Nodes, int SlowestRank, double SlowestComputeMs, LateRank[] LateRanks);

/// <summary>
/// Where every node of the current generation is: its latest progress report and the one before (for
/// steps per second), and the straggler among their ranks. Pure: the caller gives the time.
/// </summary>
internal sealed class ProgressTracker
{
    /// <summary>A node's latest report and the one before it, with when each arrived.</summary>
    public sealed record Entry(NodeProgress Latest, DateTime At, NodeProgress? Previous, DateTime PreviousAt);

    private readonly Dictionary<string, Entry> _nodes = [];

    /// <summary>The rank that holds the others up; null when none stands out.</summary>
    public Straggler? Straggler { get; private set; }

    /// <summary>Every rank of every node's latest report.</summary>
    public IEnumerable<(string Node, RankProgress Rank)> Ranks => _nodes.SelectMany(x => x.Value.Latest.Ranks.Select(r => (x.Key, r)));

    public bool TryGet(string node, [MaybeNullWhen(false)] out Entry entry) => _nodes.TryGetValue(node, out entry);

    /// <summary>A new generation: earlier reports describe another world.</summary>
    public void Clear() => _nodes.Clear();

    /// <summary>Takes a node's report; true when the straggler changed (see <see cref="Straggler"/>).</summary>
    public bool Record(NodeProgress p, DateTime now)
    {
        _nodes[p.NodeName] = _nodes.TryGetValue(p.NodeName, out var old) ? new Entry(p, now, old.Latest, old.At) : new Entry(p, now, null, default);
        var straggler = Stragglers.Find(Ranks);
        if (straggler?.Node == Straggler?.Node && straggler?.Rank == Straggler?.Rank) return false;
        Straggler = straggler;
        return true;
    }

    /// <summary>Each member's step (its slowest rank's), steps per second and report age; the slowest rank; ranks the others wait for.</summary>
    public ProgressView View(IEnumerable<StatusMember> members, DateTime now)
    {
        var nodes = new List<NodeStatus>();
        var ranks = new List<(RankProgress Rank, string Node)>();
        foreach (var m in members)
        {
            long step = 0;
            double stepsPerSecond = 0, age = -1;
            if (_nodes.TryGetValue(m.Name, out var p))
            {
                step = p.Latest.Ranks.Length > 0 ? p.Latest.Ranks.Min(r => r.Step) : 0;
                age = (now - p.At).TotalSeconds;
                if (p.Previous is { Ranks.Length: > 0 } prev && p.At > p.PreviousAt)
                    stepsPerSecond = (step - prev.Ranks.Min(r => r.Step)) / (p.At - p.PreviousAt).TotalSeconds;
                ranks.AddRange(p.Latest.Ranks.Select(r => (r, m.Name)));
            }
            nodes.Add(new NodeStatus(m.Name, m.Address, m.FirstRank, m.Trainers, m.Devices, step, stepsPerSecond, age));
        }
        var slowest = ranks.OrderByDescending(r => r.Rank.RecentComputeMs).FirstOrDefault();
        return new ProgressView(nodes.ToArray(), slowest.Node is null ? -1 : slowest.Rank.Rank, slowest.Node is null ? 0 : slowest.Rank.RecentComputeMs, Late(ranks));
    }

    /// <summary>Ranks behind the leading one, or in a step far longer than steps usually take.</summary>
    private static LateRank[] Late(List<(RankProgress Rank, string Node)> ranks)
    {
        if (ranks.Count == 0) return [];
        var leading = ranks.Max(r => r.Rank.Step);
        var typicalStep = ranks.Select(r => r.Rank.RecentStepMs).Order().ElementAt(ranks.Count / 2);
        return ranks
            .Where(x => x.Rank.Step < leading || typicalStep > 0 && x.Rank.CurrentStepMs > Math.Max(5 * typicalStep, 2000))
            .Select(x => new LateRank(x.Rank.Rank, x.Node, x.Rank.Step, leading - x.Rank.Step, x.Rank.CurrentStepMs))
            .ToArray();
    }
}
