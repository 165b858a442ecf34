using ActorTrain.Cluster.Protocol;
using Akka.Actor;
using Registration = ActorTrain.Cluster.Coordination.Registration<Akka.Actor.IActorRef>;

namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// What a registration leads to, once <see cref="Admission{TNode}.Decide"/> has said what it is. A refusal is
/// answered (and logged, unless it is routine). A node before training becomes a member, and the first generation
/// forms once min-nodes have registered. A node mid-run joins with the next generation. A retry is answered again.
/// A node of a lost coordinator's world brings its state back to the regroup of the coordinator that took over, and
/// a voter back while the quorum is lacking counts again. It updates the registrations, the epoch course and the
/// regroup's round and voters, and sends nothing and sets no timer: the coordinator carries out the <see cref="Consequence"/>.
/// </summary>
internal sealed class Arrivals(int minNodes, Admission<IActorRef> admission, RegroupProtocol regroup, EpochCourse course)
{
    /// <summary>Admits <paramref name="r"/> from <paramref name="sender"/> as <paramref name="decision"/> says, in <paramref name="phase"/>.</summary>
    public Consequence Register(RegisterNode r, IActorRef sender, AdmissionDecision decision, CoordinatorPhase phase)
    {
        switch (decision.Verdict)
        {
            case Verdict.Refuse:
                var refused = Consequence.None with { Reply = new RegistrationRefused(decision.Reason) };
                return decision.Logged ? refused with { Warnings = [$"Refused node {r.NodeName} at {sender.Path.Address}: {decision.Reason}"] } : refused;
            case Verdict.Retry:
                return Registered(r, Consequence.None);
            case Verdict.Member:
                var added = admission.Admit(r, sender) is not null;
                var start = admission.Members.Count >= minNodes ? new Consequence(NextStep.StartRun) : Consequence.None;
                return Registered(r, start) with { Watch = added, Progress = added ? CoordinatorLines.Registered(r, admission.Members.Count, minNodes) : null };
            case Verdict.Joiner:
                admission.AdmitJoiner(r, sender);
                // Forming or regrouping: the joiner enters with the next generation that forms. Finishing: too late; it is told when the run ends.
                var join = phase == CoordinatorPhase.Training ? new Consequence(NextStep.Regroup, $"node {r.NodeName} joins", Graceful: true) : Consequence.None;
                return join with { Watch = true, Reply = new NodeRegistered(r.NodeName, admission.Total, minNodes), Progress = CoordinatorLines.RegisteredMidRun(r) };
            case Verdict.Rejoin:
                return Rejoined(r, sender);
            case Verdict.VoterBack:
                regroup.VoterBack(new Registration(r, sender));
                return Registered(r, new Consequence(NextStep.ResumeRegroup)) with { Watch = true };
            default:
                return Consequence.None;
        }
    }

    /// <summary>
    /// This coordinator took over from one that was lost: a node that was training registers with its
    /// trainers' states. The regroup completes when every node of the last generation still in the
    /// cluster has come back, or after regroup-timeout.
    /// </summary>
    private Consequence Rejoined(RegisterNode r, IActorRef sender)
    {
        course.Rejoined(r.Rejoin!);
        var added = admission.Admit(r, sender) is not null;
        regroup.Rejoined(admission.Members.First(x => x.Name == r.NodeName), r);
        return Registered(r, regroup.Round.Complete ? new Consequence(NextStep.FinishRegroup) : Consequence.None) with { Watch = added };
    }

    /// <summary><paramref name="next"/>, after the node is told it is registered: the members so far, of min-nodes.</summary>
    private Consequence Registered(RegisterNode r, Consequence next) =>
        next with { Reply = new NodeRegistered(r.NodeName, admission.Members.Count, minNodes) };
}
