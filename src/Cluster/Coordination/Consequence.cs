namespace ActorTrain.Cluster.Coordination;

/// <summary>
/// What a message leads to, as a policy decides it (<see cref="Arrivals"/> for a registration, <see cref="Departures{TNode}"/>
/// for a node that is gone, fails or leaves, <see cref="EpochCourse.NonFinite"/>): the coordinator watches the sender
/// (<see cref="Watch"/>), answers it (<see cref="Reply"/>), logs the warnings, shows the progress line, and then takes <paramref name="Step"/>.
/// </summary>
/// <param name="Why">Why the run ends (<see cref="NextStep.EndRun"/>) or regroups (<see cref="NextStep.Regroup"/>).</param>
/// <param name="Graceful">The regroup is one every replica stops for after the same step (a node joins or leaves), not one after a loss.</param>
internal sealed record Consequence(NextStep Step, string Why = "", int ExitCode = ExitCodes.Done, bool Graceful = false)
{
    public static Consequence None { get; } = new(NextStep.None);

    public static Consequence EndRun(int exitCode, string why) => new(NextStep.EndRun, why, exitCode);

    /// <summary>The sender is a node the coordinator now watches (it registered).</summary>
    public bool Watch { get; init; }

    /// <summary>The answer to the sender (the node that registers, failed or leaves); null when there is none.</summary>
    public object? Reply { get; init; }

    public IReadOnlyList<string> Warnings { get; init; } = [];

    /// <summary>A line for the person running the job; null when there is none.</summary>
    public string? Progress { get; init; }
}

/// <summary>What the coordinator does once it has carried out a <see cref="Consequence"/>'s answer and lines.</summary>
internal enum NextStep
{
    /// <summary>Nothing more.</summary>
    None,

    /// <summary>Min-nodes have registered: the first generation forms.</summary>
    StartRun,

    /// <summary>Every node of the world stops and reports, for a next generation with the joiner or without the node.</summary>
    Regroup,

    /// <summary>The regroup may be complete now (it no longer waits for a node).</summary>
    CheckRegroup,

    /// <summary>The regroup is complete: the next generation forms, or the quorum is lacking, or the run ends.</summary>
    FinishRegroup,

    /// <summary>A voter is back while the quorum was lacking: the regroup goes on once the majority is seen again.</summary>
    ResumeRegroup,

    /// <summary>The run was finishing, and the final states now complete it.</summary>
    CompleteRun,

    /// <summary>The run ends with <see cref="Consequence.ExitCode"/>, for <see cref="Consequence.Why"/>.</summary>
    EndRun,
}
