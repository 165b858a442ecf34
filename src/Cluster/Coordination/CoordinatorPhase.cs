namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// The coordinator's phase. Each value is one <c>Become</c> state of <see cref="CoordinatorActor"/>, and
/// <c>status</c> shows its <see cref="CoordinatorPhases.Name"/>.
/// </summary>
internal enum CoordinatorPhase
{
    WaitingForNodes,
    Forming,
    Training,
    Regrouping,
    Finishing,
    QuorumLost,
    Ended,
}

internal static class CoordinatorPhases
{
    /// <summary>The phase as <see cref="Protocol.ClusterStatus.Phase"/> carries it.</summary>
    public static string Name(this CoordinatorPhase phase) => phase switch
    {
        CoordinatorPhase.WaitingForNodes => "waiting-for-nodes",
        CoordinatorPhase.Forming => "forming",
        CoordinatorPhase.Training => "training",
        CoordinatorPhase.Regrouping => "regrouping",
        CoordinatorPhase.Finishing => "finishing",
        CoordinatorPhase.QuorumLost => "quorum-lost",
        CoordinatorPhase.Ended => "ended",
        _ => throw new ArgumentOutOfRangeException(nameof(phase), phase, "unknown coordinator phase"),
    };
}
