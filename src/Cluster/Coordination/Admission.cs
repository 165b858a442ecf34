using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;

namespace ActorTrain.Cluster.Coordination;

/// <summary>A registered node: what it sent, and who sent it (the coordinator's node actor ref).</summary>
internal sealed record Registration<TNode>(RegisterNode Message, TNode Node) where TNode : notnull
{
    public string Name => Message.NodeName;
}

/// <summary>The ranks of one generation: its nodes in rank order, the world they form, and the source replica's global rank.</summary>
internal sealed record RankedWorld<TNode>(IReadOnlyList<Registration<TNode>> Ordered, WorldNode[] Nodes, int WorldSize, int SourceRank)
    where TNode : notnull;

/// <summary>
/// Who may register and who trains in the next generation. Members train (or will, once the world
/// forms); joiners registered while a world existed and enter with the next generation. Every node
/// must match the job, the protocol version, the model and the number of trainers of the first one;
/// a name belongs to the node that registered it first. Pure: <typeparamref name="TNode"/> is the
/// sender's identity (an actor ref in the coordinator), <paramref name="where"/> names it in refusals.
/// </summary>
internal sealed class Admission<TNode>(string jobId, int maxNodes, Func<TNode, string> where) where TNode : notnull
{
    private readonly List<Registration<TNode>> _members = [];
    private readonly List<Registration<TNode>> _joiners = [];
    private string? _fingerprint;
    private string? _jobSettings;
    private int _trainersPerNode;

    public IReadOnlyList<Registration<TNode>> Members => _members;
    public IReadOnlyList<Registration<TNode>> Joiners => _joiners;
    public IEnumerable<Registration<TNode>> All => _members.Concat(_joiners);
    public int Total => _members.Count + _joiners.Count;

    /// <summary>Why <paramref name="r"/> from <paramref name="sender"/> cannot register; null when it may.</summary>
    public string? Refusal(RegisterNode r, TNode sender)
    {
        if (r.ProtocolVersion != ActorTrainSettings.ProtocolVersion)
            return $"protocol version {r.ProtocolVersion} differs from the coordinator's {ActorTrainSettings.ProtocolVersion}";
        if (r.JobId != jobId)
            return $"job id \"{r.JobId}\" differs from the coordinator's \"{jobId}\"";
        if (_fingerprint is not null && r.ModelFingerprint != _fingerprint)
            return $"model fingerprint {r.ModelFingerprint} differs from the registered nodes' {_fingerprint} (another model definition)";
        if (_jobSettings is not null && r.JobSettingsDigest != _jobSettings)
            return $"its job settings (actortrain.job, digest {Shown(r.JobSettingsDigest)}) differ from the registered nodes' ({Shown(_jobSettings)}); every node of a run needs the same";
        if (r.TrainerCount < 1)
            return "a node needs at least one trainer";
        if (_trainersPerNode != 0 && r.TrainerCount != _trainersPerNode)
            return $"{r.TrainerCount} trainer(s) per node, but the registered nodes have {_trainersPerNode}; hierarchical all-reduce needs the same number on every node";
        var existing = All.FirstOrDefault(x => x.Name == r.NodeName);
        if (existing is not null && !existing.Node.Equals(sender))
            return $"node name \"{r.NodeName}\" is already taken by {where(existing.Node)}; give each node its own actortrain.node-name";
        return null;
    }

    /// <summary>
    /// What to do with a registration in <paramref name="run"/>'s phase. Before training a matching node
    /// becomes a member; while a world exists a new node joins with the next generation (elastic runs
    /// only, up to max-nodes) and a member's retry is answered again; a node of a lost coordinator's world
    /// brings its state back; after the run nobody registers.
    /// </summary>
    public AdmissionDecision Decide(RegisterNode r, TNode sender, RunState run)
    {
        var refusal = Refusal(r, sender);
        switch (run.Phase)
        {
            case CoordinatorPhase.Ended:
                return AdmissionDecision.Refused("the run has ended", logged: false);
            case CoordinatorPhase.WaitingForNodes:
                if (refusal is not null) return AdmissionDecision.Refused(refusal);
                if (r.Rejoin is not null && run.Elastic) return new AdmissionDecision(Verdict.Rejoin);
                return run.Recovering ? AsJoiner() : new AdmissionDecision(Verdict.Member);
            case CoordinatorPhase.QuorumLost:
                // A voter that lost its coordinator registers again with the state it stopped in.
                if (r.Rejoin is not null && run.IsVoter(r.NodeName) && r.JobId == jobId) return new AdmissionDecision(Verdict.VoterBack);
                if (refusal is not null) return AdmissionDecision.Refused(refusal);
                return r.Rejoin is null ? AsJoiner() : new AdmissionDecision(Verdict.Ignore);
            default:
                // A node retries until it hears back, so a retry sent before the world formed may arrive after it.
                if (Find(r.NodeName, sender) is not null) return new AdmissionDecision(Verdict.Retry);
                if (!run.Elastic)
                    return AdmissionDecision.Refused($"training of job \"{jobId}\" is already running with {_members.Count} node(s), and actortrain.elastic.enabled is off", logged: false);
                if (r.Rejoin is not null)
                    return AdmissionDecision.Refused($"node {r.NodeName} comes back from generation {r.Rejoin.Generation}, but this coordinator is running generation {run.Generation}; it was left out");
                return refusal is not null ? AdmissionDecision.Refused(refusal) : AsJoiner();
        }
    }

    private AdmissionDecision AsJoiner() => JoinRefusal() is { } full ? AdmissionDecision.Refused(full) : new AdmissionDecision(Verdict.Joiner);

    /// <summary>Why one more node cannot join (actortrain.max-nodes); null when it may.</summary>
    public string? JoinRefusal() =>
        maxNodes > 0 && Total >= maxNodes ? $"the job already has {Total} node(s), actortrain.max-nodes = {maxNodes}" : null;

    /// <summary>Adds a member unless one of that name is one already; null when it was.</summary>
    public Registration<TNode>? Admit(RegisterNode r, TNode node) =>
        _members.Any(x => x.Name == r.NodeName) ? null : Add(_members, r, node);

    /// <summary>Adds a node that enters with the next generation.</summary>
    public Registration<TNode> AdmitJoiner(RegisterNode r, TNode node) => Add(_joiners, r, node);

    private Registration<TNode> Add(List<Registration<TNode>> into, RegisterNode r, TNode node)
    {
        _fingerprint ??= r.ModelFingerprint;
        _jobSettings ??= r.JobSettingsDigest;
        if (_trainersPerNode == 0) _trainersPerNode = r.TrainerCount;
        var registration = new Registration<TNode>(r, node);
        into.Add(registration);
        return registration;
    }

    private static string Shown(string digest) => digest.Length == 0 ? "none set" : digest;

    /// <summary>The registration of <paramref name="name"/>, when <paramref name="node"/> is the one that made it.</summary>
    public Registration<TNode>? Find(string name, TNode node) => All.FirstOrDefault(x => x.Name == name && x.Node.Equals(node));

    public bool IsMember(string name) => _members.Any(m => m.Name == name);

    /// <summary>Makes <paramref name="r"/> a member again (a voter seen again after a lost quorum).</summary>
    public void Readmit(Registration<TNode> r)
    {
        if (!_members.Contains(r)) _members.Add(r);
    }

    public bool RemoveMember(Registration<TNode> r) => _members.Remove(r);

    public bool RemoveJoiner(Registration<TNode> r) => _joiners.Remove(r);

    /// <summary>Removes the members (and, with <paramref name="joinersToo"/>, the joiners) that are gone; returns them.</summary>
    public List<Registration<TNode>> RemoveWhere(Func<Registration<TNode>, bool> gone, bool joinersToo)
    {
        var removed = _members.Where(gone).ToList();
        if (joinersToo) removed.AddRange(_joiners.Where(gone));
        foreach (var r in removed)
        {
            _members.Remove(r);
            _joiners.Remove(r);
        }
        return removed;
    }

    /// <summary>With nobody registered, the next node may bring another model or trainer count.</summary>
    public void ForgetModelIfEmpty()
    {
        if (Total > 0) return;
        _fingerprint = null;
        _jobSettings = null;
        _trainersPerNode = 0;
    }

    /// <summary>The joiners enter the next generation: they are handed over and no longer wait.</summary>
    public List<Registration<TNode>> TakeJoiners()
    {
        var incoming = _joiners.ToList();
        _joiners.Clear();
        return incoming;
    }

    /// <summary>
    /// Ranks the next generation's nodes: those on the coordinator's own process first (so rank 0
    /// trains beside the coordinator when the seed trains), the rest in the given order. The members
    /// become exactly these nodes. <paramref name="sourceNode"/>'s trainer
    /// <paramref name="sourceLocalRank"/> is the source replica (rank 0 when none is named).
    /// </summary>
    public RankedWorld<TNode> Rank(IEnumerable<Registration<TNode>> nodes, Func<TNode, bool> isLocal, string? sourceNode, int sourceLocalRank)
    {
        var ordered = nodes.OrderBy(r => isLocal(r.Node) ? 0 : 1).ToList();
        var worldNodes = new WorldNode[ordered.Count];
        int rank = 0, sourceRank = 0;
        for (var i = 0; i < ordered.Count; i++)
        {
            var m = ordered[i].Message;
            if (m.NodeName == sourceNode) sourceRank = rank + sourceLocalRank;
            worldNodes[i] = new WorldNode(m.NodeName, m.NodeActorPath, m.EndpointPath, rank, m.TrainerCount, m.Devices, m.DataPlaneEndpoint);
            rank += m.TrainerCount;
        }
        _members.Clear();
        _members.AddRange(ordered);
        return new RankedWorld<TNode>(ordered, worldNodes, rank, sourceRank);
    }
}

/// <summary>What the coordinator does with a registration (see <see cref="Admission{TNode}.Decide"/>).</summary>
internal enum Verdict
{
    /// <summary>Refused: the node is told why (and the refusal logged when <see cref="AdmissionDecision.Logged"/>).</summary>
    Refuse,
    /// <summary>A registered node asked again: it is answered again.</summary>
    Retry,
    /// <summary>A node before training: it is a member of the first generation.</summary>
    Member,
    /// <summary>A node that enters with the next generation.</summary>
    Joiner,
    /// <summary>A node of a lost coordinator's world, registering with its state: this coordinator takes over.</summary>
    Rejoin,
    /// <summary>A voter of the previous generation, back with its state while the quorum is lost.</summary>
    VoterBack,
    /// <summary>Nothing to do (a rejoin that is no voter's, while the quorum is lost).</summary>
    Ignore,
}

internal sealed record AdmissionDecision(Verdict Verdict, string Reason = "", bool Logged = true)
{
    public static AdmissionDecision Refused(string reason, bool logged = true) => new(Verdict.Refuse, reason, logged);
}

/// <summary>Where the run stands when a node registers.</summary>
/// <param name="Recovering">This coordinator is taking over a run: the last world's nodes are registering again.</param>
/// <param name="IsVoter">Whether a node (by name) belongs to the previous generation.</param>
internal sealed record RunState(CoordinatorPhase Phase, bool Elastic, bool Recovering, long Generation, Func<string, bool> IsVoter);
