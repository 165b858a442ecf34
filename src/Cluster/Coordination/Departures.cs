using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// What it means for the run when a node departs: a node of the world is gone (its actor stopped, it
/// became unreachable or it left the cluster), a collective broke (the regroup finds who is gone), a
/// node's trainer failed, or a node was asked to stop (SIGTERM). Outside an elastic run a lost or failed
/// node ends the run. In one the others regroup without it; a node lost while the run finishes is left
/// out of the report, one lost during a regroup is no longer waited for, and one that has not trained
/// yet simply goes. Pure: it updates the registrations, the electorate, the epoch course and the regroup
/// round, and returns the <see cref="Consequence"/> the coordinator carries out.
/// </summary>
internal sealed class Departures<TNode>(bool elastic, Admission<TNode> admission, Electorate<TNode> voters, EpochCourse course, RegroupRound round)
    where TNode : notnull
{
    /// <summary>
    /// A node of the world is gone (<paramref name="gone"/> matches its registration), or a collective failed
    /// somewhere (null: the regroup finds who is gone). A joiner that is gone no longer waits to join.
    /// </summary>
    public Consequence Lost(Func<Registration<TNode>, bool>? gone, string why, CoordinatorPhase phase)
    {
        if (phase == CoordinatorPhase.Ended) return Consequence.None;
        List<string> warnings = [];
        if (gone is not null && admission.Joiners.FirstOrDefault(gone) is { } joiner && admission.RemoveJoiner(joiner))
            warnings.Add($"Node {joiner.Name}, waiting to join, is gone: {why}");
        var lost = gone is null ? null : admission.Members.FirstOrDefault(gone);
        if (gone is not null && lost is null) return Consequence.None with { Warnings = warnings };
        var what = lost is null ? why : $"node {lost.Name} was lost ({why})";
        if (!elastic)
            return Consequence.EndRun(ExitCodes.NodeLost, $"{what} during training; actortrain.elastic.enabled is off, so the run ends") with { Warnings = warnings };
        if (lost is not null) admission.RemoveMember(lost);
        if (phase is not (CoordinatorPhase.Finishing or CoordinatorPhase.Regrouping))
        {
            if (lost is not null) warnings.Add($"{what}; the others regroup without it");
            return new Consequence(NextStep.Regroup, what) { Warnings = warnings };
        }
        if (lost is null) return Consequence.None;
        if (phase == CoordinatorPhase.Finishing)
        {
            // Training is over: the others' final states still make a report.
            warnings.Add($"{what} while the run was finishing; the report leaves it out");
            return new Consequence(course.Excuse(lost.Name) ? NextStep.CompleteRun : NextStep.None) { Warnings = warnings };
        }
        round.Forget(lost.Name);
        warnings.Add($"{what} during the regroup; it is left out");
        return new Consequence(NextStep.CheckRegroup) { Warnings = warnings };
    }

    /// <summary>
    /// A node reports the generation's collective broken. During a regroup only a new suspect
    /// (<paramref name="newSuspect"/>) matters: the regroup may be complete without it. Otherwise the
    /// generation is lost, and the regroup finds who is gone.
    /// </summary>
    public Consequence Broken(GenerationBroken broken, bool newSuspect, CoordinatorPhase phase)
    {
        if (phase == CoordinatorPhase.Regrouping) return newSuspect ? new Consequence(NextStep.CheckRegroup) : Consequence.None;
        var why = broken.Suspect.Length > 0
            ? $"{broken.NodeName} lost its data-plane connection to {broken.Suspect}"
            : $"a collective failed on {broken.NodeName}: {broken.Reason}";
        var lost = Lost(null, why, phase);
        return lost with { Warnings = [$"Node {broken.NodeName} reports generation {broken.Generation} broken: {broken.Reason}", .. lost.Warnings] };
    }

    /// <summary>
    /// A node's trainer failed, as the node's registered actor (<paramref name="sender"/>) reports; it may be a voter no
    /// longer registered (nothing follows). Outside an elastic run the run ends, as it does when no world has formed
    /// (<paramref name="worldFormed"/>) once the wait for nodes is over. Otherwise the node is told it is left out and no
    /// longer counts for the quorum; with a world it is lost, before one it is dropped.
    /// </summary>
    public Consequence Failed(string node, TNode sender, string reason, CoordinatorPhase phase, bool worldFormed)
    {
        if (admission.Find(node, sender) is not { } failed) return Consequence.None;
        if (!elastic || !worldFormed && phase != CoordinatorPhase.WaitingForNodes)
            return Consequence.EndRun(ExitCodes.NodeFailed, $"node {node} failed: {reason}");
        voters.Depart(node);
        var told = new EndRun(ExitCodes.NodeFailed, $"this node failed and was left out of the run: {reason}");
        if (worldFormed) return Lost(r => r.Node.Equals(sender), $"it failed: {reason}", phase) with { Reply = told };
        var dropped = admission.RemoveMember(failed) | admission.RemoveJoiner(failed);
        return Consequence.None with { Reply = told, Warnings = dropped ? [$"Node {node} failed before training started and is dropped: {reason}"] : [] };
    }

    /// <summary>
    /// A node was asked to stop (SIGTERM), as its registered actor (<paramref name="sender"/>) says. Before it trains (a
    /// joiner, or no world yet) it simply goes. Otherwise every replica stops after the same step (a regroup, when
    /// training; forming or regrouping, it is left out when the next generation forms), and the next generation forms without it.
    /// </summary>
    public Consequence Leaving(string node, TNode sender, string reason, CoordinatorPhase phase, bool worldFormed)
    {
        if (admission.Find(node, sender) is not { } leaving || phase == CoordinatorPhase.Ended) return Consequence.None;
        if (admission.RemoveJoiner(leaving) || !worldFormed)
        {
            admission.RemoveMember(leaving);
            return Consequence.None with { Reply = new EndRun(ExitCodes.Done, "left before it took part in training") };
        }
        voters.Leave(node);
        var next = phase == CoordinatorPhase.Training ? new Consequence(NextStep.Regroup, $"node {node} leaves ({reason})", Graceful: true) : Consequence.None;
        return next with { Progress = CoordinatorLines.Leaving(node, reason) };
    }

    /// <summary>
    /// Nodes registered before training are gone (<paramref name="dropped"/>, no longer registered). Once nobody is
    /// registered the next node may bring another model. A coordinator taking over (<paramref name="recovering"/>) no
    /// longer waits for them, and its regroup ends once every node it still waits for has come back.
    /// </summary>
    public Consequence Unregistered(IEnumerable<Registration<TNode>> dropped, string why, bool recovering)
    {
        var warnings = dropped.Select(r => $"Node {r.Name} dropped from registration: {why}").ToList();
        if (!recovering) admission.ForgetModelIfEmpty();
        var next = recovering && round.WaitsForAny && round.Complete ? NextStep.FinishRegroup : NextStep.None;
        return new Consequence(next) { Warnings = warnings };
    }

    /// <summary>A generation has started: if nodes of it asked to leave while it formed, every replica stops after the same step without them.</summary>
    public Consequence LeftWhileForming() =>
        admission.Members.Any(m => voters.IsLeaving(m.Name))
            ? new Consequence(NextStep.Regroup, $"node(s) {string.Join(", ", voters.Leaving)} leave", Graceful: true)
            : Consequence.None;
}
