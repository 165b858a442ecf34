using System.Diagnostics;
using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// One regroup: the generation it forms, why, when it began, the nodes expected to stop and report,
/// and the states they reported (<see cref="NodeHalted"/>).
/// </summary>
internal sealed class RegroupRound
{
    private readonly Dictionary<string, NodeHalted> _halts = [];
    private readonly HashSet<string> _expected = [];

    /// <summary>The generation the regroup forms.</summary>
    public long For { get; private set; }

    public string Reason { get; private set; } = "";

    /// <summary>The <see cref="Stopwatch"/> timestamp of the event that ended the previous generation.</summary>
    public long Started { get; private set; }

    public IReadOnlyDictionary<string, NodeHalted> Halts => _halts;

    public void Begin(long next, string reason)
    {
        For = next;
        Reason = reason;
        Started = Stopwatch.GetTimestamp();
        _halts.Clear();
        _expected.Clear();
    }

    public void Expect(string node) => _expected.Add(node);

    /// <summary>Takes a node's state as it stands (a node that registers again brings it).</summary>
    public void Halted(NodeHalted halt) => _halts[halt.NodeName] = halt;

    /// <summary>Takes a report for this regroup from a node it waits for; false for any other.</summary>
    public bool Accept(NodeHalted halt)
    {
        if (halt.NextGeneration != For || !_expected.Contains(halt.NodeName)) return false;
        _halts[halt.NodeName] = halt;
        return true;
    }

    /// <summary>The node is gone: the regroup neither waits for it nor uses its state.</summary>
    public void Forget(string node)
    {
        _halts.Remove(node);
        _expected.Remove(node);
    }

    /// <summary>The node leaves: its state is not used.</summary>
    public void Drop(string node) => _halts.Remove(node);

    public bool HasHalted(string node) => _halts.ContainsKey(node);

    public bool WaitsForAny => _expected.Count > 0;

    /// <summary>Every expected node has reported.</summary>
    public bool Complete => _expected.All(_halts.ContainsKey);

    /// <summary>Every expected node has reported but those <paramref name="excused"/>.</summary>
    public bool CompleteBut(Func<string, bool> excused) => _expected.Where(n => !excused(n)).All(_halts.ContainsKey);

    /// <summary>The furthest step any reported replica completed (0 when none did).</summary>
    public long FurthestStep => _halts.Values.SelectMany(h => h.Trainers).Select(t => t.Position.GlobalStep).DefaultIfEmpty(0).Max();
}

/// <summary>How a regroup ends: who leaves, who is left out (and why), who goes on, and from which replica.</summary>
/// <param name="Survivors">The members that reported, with the data-plane address of their new listener.</param>
/// <param name="Failure">Why no generation can follow (no node holds the model's state); null when one can.</param>
internal sealed record RegroupOutcome<TNode>(
    IReadOnlyList<Registration<TNode>> Leavers,
    IReadOnlyList<(Registration<TNode> Node, string Why)> LeftOut,
    IReadOnlyList<Registration<TNode>> Survivors,
    SourceChoice? Source,
    string? Failure) where TNode : notnull;

/// <summary>What a regroup's end depends on besides the reports.</summary>
/// <param name="IsSuspect">A node another reported unreachable on the data plane.</param>
/// <param name="HasHistory">A generation trained before: a world of fresh replicas cannot replace it.</param>
internal sealed record RegroupRules(Func<string, bool> IsLeaving, Func<string, bool> IsSuspect, TimeSpan SuspectGrace, TimeSpan Timeout, bool HasHistory);

internal static class RegroupEnd
{
    /// <summary>
    /// Ends <paramref name="round"/> for <paramref name="members"/>: the leaving go; the silent are
    /// left out; the rest go on from the furthest replica among them.
    /// </summary>
    public static RegroupOutcome<TNode> Conclude<TNode>(RegroupRound round, IReadOnlyList<Registration<TNode>> members, RegroupRules rules) where TNode : notnull
    {
        var leavers = members.Where(m => rules.IsLeaving(m.Name)).ToList();
        foreach (var l in leavers) round.Drop(l.Name);
        var staying = members.Where(m => !rules.IsLeaving(m.Name)).ToList();
        var leftOut = staying.Where(m => !round.HasHalted(m.Name)).Select(m => (m, rules.IsSuspect(m.Name)
            ? $"its ring neighbour lost the data-plane connection to it, and it did not answer within {rules.SuspectGrace.TotalSeconds:0}s"
            : $"it did not stop and report within {rules.Timeout.TotalSeconds:0}s (actortrain.elastic.regroup-timeout)")).ToList();
        var survivors = staying.Where(m => round.HasHalted(m.Name))
            .Select(m => m with { Message = m.Message with { DataPlaneEndpoint = round.Halts[m.Name].DataPlaneEndpoint } }).ToList();
        var source = SourceReplica.Choose(round.Halts.Values.Where(h => survivors.Any(m => m.Name == h.NodeName)));
        var failure = survivors.Count == 0 || source is null || source.Node is null && rules.HasHistory
            ? $"no node holding the model's state is left after {round.Reason}"
            : null;
        return new RegroupOutcome<TNode>(leavers, leftOut, survivors, source, failure);
    }
}
