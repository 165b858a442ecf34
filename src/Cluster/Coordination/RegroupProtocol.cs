using ActorTrain.Cluster.Protocol;
using ActorTrain.Cluster.Settings;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Registration = ActorTrain.Cluster.Coordination.Registration<Akka.Actor.IActorRef>;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// The regroup between two generations, run by <see cref="CoordinatorActor"/> on its own thread: the nodes
/// it waits for, when it is complete (a suspect gets only a short grace), whether this side holds the
/// previous generation's quorum, the voters seen again after a partition, and how it ends (the leaving
/// are told to go, the silent are left out, voters not kept are downed). A suspect is a node another
/// reported unreachable on the data plane when its collective broke. Its timers send the coordinator
/// <see cref="RegroupTimedOut"/>; the coordinator decides what a conclusion means for the run.
/// </summary>
internal sealed class RegroupProtocol(ElasticSettings elastic, Admission<IActorRef> admission, Electorate<IActorRef> voters, IWithTimers owner)
{
    private const string TimeoutTimer = "regroup";
    private const string GraceTimer = "suspect-grace";

    private readonly HashSet<string> _suspects = [];

    public RegroupRound Round { get; } = new();

    /// <summary>The generation the regroup forms.</summary>
    public long For => Round.For;

    /// <summary>Taking over from a lost coordinator: the last world's nodes register again.</summary>
    public bool Recovering { get; private set; }

    private ITimerScheduler Timers => owner.Timers;

    /// <summary>How long a regroup waits for a suspect once every other node has answered (a live node answers within a step).</summary>
    public TimeSpan SuspectGrace => TimeSpan.FromTicks(Math.Min(elastic.RegroupTimeout.Ticks, TimeSpan.FromSeconds(2).Ticks));

    /// <summary>Takes the suspect a node named when its collective broke; true when it is a new one (a node never suspects itself).</summary>
    public bool Suspect(GenerationBroken broken) =>
        broken.Suspect.Length > 0 && broken.Suspect != broken.NodeName && _suspects.Add(broken.Suspect);

    public bool IsSuspect(string node) => _suspects.Contains(node);

    /// <summary>A regroup for generation <paramref name="next"/>: every member is to stop and report within regroup-timeout.</summary>
    public void Begin(long next, string reason)
    {
        Round.Begin(next, reason);
        foreach (var r in admission.Members) Round.Expect(r.Name);
        StartTimeout();
    }

    /// <summary>
    /// This coordinator took over from a lost one: the regroup waits for the last world's nodes still
    /// <paramref name="up"/> in the cluster, and the last world's voters decide the quorum. Returns the nodes waited for.
    /// </summary>
    public List<string> TakeOver(NodeRejoin rejoin, IReadOnlySet<Address> up)
    {
        Recovering = true;
        Round.Begin(rejoin.Generation + 1, "the coordinator moved to another seed node");
        var lastMembers = rejoin.World.Where(n => Quorum.AddressOf(n.NodeActorPath) is { } a && up.Contains(a)).Select(n => n.NodeName).ToList();
        foreach (var name in lastMembers) Round.Expect(name);
        voters.TakeOver(rejoin.World);
        StartTimeout();
        return lastMembers;
    }

    /// <summary>A node of the last world registered again with its trainers' states (after a takeover).</summary>
    public void Rejoined(Registration member, RegisterNode registration)
    {
        voters.Register(member);
        Round.Halted(HaltOf(registration));
        Round.Expect(member.Name);
    }

    /// <summary>A voter cut off by a partition registered again: it is a member again, and its state counts.</summary>
    public void VoterBack(Registration voter)
    {
        admission.RemoveWhere(m => m.Name == voter.Name, joinersToo: false);
        voters.Register(voter);
        Round.Halted(HaltOf(voter.Message));
        Readmit(voter);
    }

    private NodeHalted HaltOf(RegisterNode r) => new(Round.For, r.NodeName, r.Rejoin!.Trainers, r.DataPlaneEndpoint);

    /// <summary>Takes a report for this regroup from a node it waits for; false for any other.</summary>
    public bool Accept(NodeHalted halt) => Round.Accept(halt);

    public bool IsCurrent(RegroupTimedOut timeout) => timeout.Generation == Round.For;

    /// <summary>Drops the registrations that are gone (joiners too, unless only members); the regroup no longer waits for them.</summary>
    public List<Registration> Drop(Func<Registration, bool> gone, bool joinersToo)
    {
        var dropped = admission.RemoveWhere(gone, joinersToo);
        foreach (var r in dropped) Round.Forget(r.Name);
        return dropped;
    }

    /// <summary>Every node has reported; when only suspects have not, they get a short grace (a live node answers within a step).</summary>
    public bool Complete()
    {
        if (Round.Complete) return true;
        if (Round.CompleteBut(IsSuspect) && !Timers.IsTimerActive(GraceTimer))
            Timers.StartSingleTimer(GraceTimer, new RegroupTimedOut(Round.For), SuspectGrace);
        return false;
    }

    /// <summary>
    /// Stops waiting. Null when this side may form the next generation; otherwise why not. Only a side that
    /// sees the majority of the previous generation may form the next one; the silent nodes may be training
    /// on the other side, so nothing is decided about them then.
    /// </summary>
    public string? Stop()
    {
        Timers.Cancel(TimeoutTimer);
        Timers.Cancel(GraceTimer);
        Recovering = false;
        return QuorumLacking();
    }

    private string? QuorumLacking() =>
        elastic.Quorum == QuorumPolicy.Off ? null : voters.Lacking(name => Round.HasHalted(name) && admission.IsMember(name));

    /// <summary>
    /// Ends the regroup: the leaving are told to go, the silent are left out, and voters not in the next
    /// generation are downed (membership converges; one cut off by a partition learns it was removed). The
    /// next generation is the nodes that reported and those waiting to join, unless no replica is left to go
    /// on from or fewer than min-surviving-nodes remain. <paramref name="hasHistory"/>: a generation trained
    /// before, so a world of fresh replicas cannot replace it.
    /// </summary>
    public NextGeneration Conclude(bool hasHistory, ILoggingAdapter log, Address self, Action<Address> down)
    {
        var rules = new RegroupRules(voters.IsLeaving, IsSuspect, SuspectGrace, elastic.RegroupTimeout, hasHistory);
        var end = RegroupEnd.Conclude(Round, admission.Members, rules);
        foreach (var gone in end.Leavers)
        {
            admission.RemoveMember(gone);
            gone.Node.Tell(new EndRun(ExitCodes.Done, $"left the run after step {Round.FurthestStep}"));
        }
        foreach (var (silent, why) in end.LeftOut)
        {
            admission.RemoveMember(silent);
            log.Warning("Node {0} is left out of generation {1}: {2}", silent.Name, Round.For, why);
            silent.Node.Tell(new LeftOut(Round.For, $"left out of generation {Round.For}: {why}"));
        }
        var kept = admission.Members.Select(VoterAddress).ToHashSet();
        foreach (var address in voters.ToDown(admission.IsMember, kept, self).ToList()) down(address);
        _suspects.Clear();
        if (end.Failure is not null || end.Source is not { } source)
            return NextGeneration.Failed(end.Failure ?? $"no replica is left to go on from after {Round.Reason}");
        // Joiners are taken only now: a run that ends here tells them too.
        var nodes = end.Survivors.Concat(admission.TakeJoiners()).ToList();
        if (nodes.Count < elastic.MinSurvivingNodes)
            return NextGeneration.Failed($"{Round.Reason}: only {nodes.Count} node(s) remain, fewer than actortrain.elastic.min-surviving-nodes = {elastic.MinSurvivingNodes}");
        return new NextGeneration(nodes, source, null);
    }

    public static Address VoterAddress(Registration r) => Quorum.AddressOf(r.Message.NodeActorPath) ?? r.Node.Path.Address;

    /// <summary>The members up (or weakly up) in the cluster's <paramref name="state"/>: a coordinator that takes over waits for the last world's nodes among them.</summary>
    public static IReadOnlySet<Address> Up(ClusterEvent.CurrentClusterState state) =>
        state.Members.Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp).Select(m => m.Address).ToHashSet();

    /// <summary>Whether this side sees an address: a member of the cluster's <paramref name="state"/> that is not unreachable.</summary>
    public static Func<Address, bool> Visible(ClusterEvent.CurrentClusterState state)
    {
        var unreachable = state.Unreachable.Select(m => m.Address).ToHashSet();
        var members = state.Members.Select(m => m.Address).ToHashSet();
        return a => !unreachable.Contains(a) && members.Contains(a);
    }

    /// <summary>Whether <paramref name="address"/> is still in the cluster (joining, up or weakly up): only then is a voter left out downed.</summary>
    public static bool InCluster(ClusterEvent.CurrentClusterState state, Address address) =>
        state.Members.Any(m => m.Address == address && m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Joining);

    /// <summary>A voter's report while the quorum is lacking: it is a member again, and its state counts. False when not a voter's report for this regroup.</summary>
    public bool HaltedWhileLacking(NodeHalted h, IActorRef sender)
    {
        if (h.NextGeneration != Round.For || voters.Registration(h.NodeName, sender) is not { } r) return false;
        Round.Halted(h);
        Readmit(r);
        return true;
    }

    /// <summary>
    /// The network healed for some: every absent voter this side sees again (<paramref name="visible"/>) is asked
    /// for its state (one stopped for lack of quorum answers at once), and the regroup waits for it.
    /// </summary>
    public void SeenAgain(long generation, Func<Address, bool> visible)
    {
        var seen = voters.Absent(r => admission.Members.Contains(r)).Where(r => r.Node.Path.Address.HasLocalScope || visible(r.Node.Path.Address)).ToList();
        foreach (var r in seen) r.Node.Tell(new Regroup(generation, Round.For, false, "the network healed"));
        Readmit(seen.ToArray());
    }

    /// <summary>Back from a lost quorum: true once the majority is seen again, and the regroup waits regroup-timeout more.</summary>
    public bool Resume()
    {
        if (QuorumLacking() is not null) return false;
        StartTimeout();
        return true;
    }

    /// <summary>Voters seen again are members again, and the regroup waits for them.</summary>
    private void Readmit(params Registration[] again)
    {
        foreach (var r in again)
        {
            admission.Readmit(r);
            Round.Expect(r.Name);
        }
    }

    private void StartTimeout() => Timers.StartSingleTimer(TimeoutTimer, new RegroupTimedOut(Round.For), elastic.RegroupTimeout);
}

/// <summary>What a regroup leaves: the next generation's nodes and the replica it goes on from, or why no generation can follow.</summary>
internal sealed record NextGeneration(IReadOnlyList<Registration> Nodes, SourceChoice? Source, string? Failure)
{
    public static NextGeneration Failed(string why) => new([], null, why);
}

/// <summary>The regroup for <paramref name="Generation"/> has waited long enough (regroup-timeout, or a suspect's grace).</summary>
internal sealed record RegroupTimedOut(long Generation);
