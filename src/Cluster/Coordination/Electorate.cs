using ActorTrain.Cluster.Protocol;
using Akka.Actor;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// The nodes whose majority a side needs to form the next generation (<see cref="Quorum"/>): those of
/// the generation that trains, or trained while the next one forms. Their registrations stay known
/// while they are out of the members, so a voter seen again after a partition can come back. Nodes
/// known to have stopped on their own (they failed or left) no longer count.
/// </summary>
internal sealed class Electorate<TNode> where TNode : notnull
{
    private readonly Dictionary<string, Registration<TNode>> _registrations = [];
    private readonly HashSet<string> _departed = [];
    private readonly HashSet<string> _leaving = [];
    private List<Quorum.Voter> _voters = [];

    /// <summary>Nodes that asked to leave (SIGTERM): they stop after the same step as the others and are not in the next generation.</summary>
    public IReadOnlyCollection<string> Leaving => _leaving;

    /// <summary>A generation forms: its nodes are the voters, and nobody has departed or is leaving yet.</summary>
    public void Elect(IEnumerable<Registration<TNode>> nodes, Func<Registration<TNode>, Address> addressOf)
    {
        _voters = nodes.Select(r => new Quorum.Voter(r.Name, addressOf(r))).ToList();
        _registrations.Clear();
        foreach (var r in nodes) _registrations[r.Name] = r;
        _departed.Clear();
        _leaving.Clear();
    }

    /// <summary>A new coordinator takes over: the last world's nodes vote, and register again as they come back.</summary>
    public void TakeOver(IEnumerable<WorldNode> world)
    {
        _voters = world.Select(n => new Quorum.Voter(n.NodeName, Quorum.AddressOf(n.NodeActorPath) ?? Address.AllSystems)).ToList();
        _registrations.Clear();
        _departed.Clear();
    }

    public void Register(Registration<TNode> r) => _registrations[r.Name] = r;

    /// <summary>The voter registration of <paramref name="name"/>, when <paramref name="node"/> made it.</summary>
    public Registration<TNode>? Registration(string name, TNode node) =>
        _registrations.TryGetValue(name, out var r) && r.Node.Equals(node) ? r : null;

    public bool IsVoter(string name) => _voters.Any(v => v.Name == name);

    /// <summary>The node stopped on its own (it failed): it no longer counts.</summary>
    public void Depart(string name) => _departed.Add(name);

    /// <summary>The node leaves the run: it no longer counts, and is not in the next generation.</summary>
    public void Leave(string name)
    {
        _departed.Add(name);
        _leaving.Add(name);
    }

    public bool IsLeaving(string name) => _leaving.Contains(name);

    /// <summary>Null when the voters <paramref name="seen"/> from this side hold the quorum; otherwise why not.</summary>
    public string? Lacking(Func<string, bool> seen)
    {
        var voters = _voters.Where(v => !_departed.Contains(v.Name)).ToList();
        return Quorum.Holds(voters, seen) ? null : Quorum.Lacking(voters.Count(v => seen(v.Name)), voters.Count);
    }

    /// <summary>Voters that still count but are not among the members now (<paramref name="isMember"/>).</summary>
    public List<Registration<TNode>> Absent(Func<Registration<TNode>, bool> isMember) =>
        _registrations.Values.Where(r => !_departed.Contains(r.Name) && !isMember(r)).ToList();

    /// <summary>
    /// Addresses of the voters that are not in the next generation (<paramref name="kept"/>) and did
    /// not leave on their own: the cluster should drop them. Never <paramref name="self"/> or a local
    /// address (Cluster.Down reads one as its own), nor an address a kept node shares.
    /// </summary>
    public IEnumerable<Address> ToDown(Func<string, bool> kept, IReadOnlySet<Address> keptAddresses, Address self) =>
        _voters.Where(v => !kept(v.Name) && !_leaving.Contains(v.Name)).Select(v => v.Address)
            .Where(a => !a.HasLocalScope && a != self && a != Address.AllSystems && !keptAddresses.Contains(a));
}
