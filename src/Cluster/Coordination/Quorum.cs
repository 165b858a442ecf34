using Akka.Actor;
using Akka.Cluster;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// Which side of a network partition may go on training: the one that sees a strict majority of
/// the previous generation's nodes. An even split goes to the half that holds the lowest address
/// (host, then port) among those nodes. That is the rule of Akka's keep-majority split-brain
/// resolver, so the resolver keeps the side that trains when the cluster's members are the
/// generation's nodes. Nodes known to have stopped on their own (they reported a failure or left
/// on SIGTERM) are not counted: they cannot be training on another side.
/// </summary>
internal static class Quorum
{
    /// <summary>One node of the previous generation.</summary>
    public sealed record Voter(string Name, Address Address);

    /// <param name="previous">The previous generation's nodes, without those known to have stopped.</param>
    /// <param name="seen">Whether a node (by name) is seen from this side.</param>
    public static bool Holds(IReadOnlyCollection<Voter> previous, Func<string, bool> seen)
    {
        if (previous.Count == 0) return true;
        var count = previous.Count(v => seen(v.Name));
        if (2 * count != previous.Count) return 2 * count > previous.Count;
        var lowest = previous.Select(v => v.Address).Min(Member.AddressOrdering)!;
        return previous.Any(v => v.Address == lowest && seen(v.Name));
    }

    /// <summary>Why a side with <paramref name="seen"/> of <paramref name="total"/> nodes has no quorum, for messages.</summary>
    public static string Lacking(int seen, int total) =>
        2 * seen == total
            ? $"it sees {seen} of the {total} node(s) of the previous generation, an even split, and not the half holding the lowest address"
            : $"it sees {seen} of the {total} node(s) of the previous generation, no strict majority";

    /// <summary>The address of a node actor's path; null when the path cannot be read.</summary>
    public static Address? AddressOf(string actorPath) =>
        ActorPath.TryParse(actorPath, out var path) ? path.Address : null;
}
