using Akka.Actor;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>To itself: time to tell the coordinator where the node's trainers are (for status and hang reports).</summary>
internal sealed class ReportProgress
{
    public static readonly ReportProgress Instance = new();

    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(2);

    private ReportProgress() { }
}

/// <summary>To itself: a trainer failed, or stopped unasked.</summary>
internal sealed record LocalFailure(string Reason);

/// <summary>To itself, after <see cref="NodeClusterWatch.SeedLostGrace"/>: the seed its coordinator ran on is gone.</summary>
internal sealed record SeedLost(Address Address, string How, bool NoSeedLeft);
