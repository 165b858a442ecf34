using ActorTrain.Cluster.Logging;
using ActorTrain.Cluster.Protocol;
using ActorTrain.TrainerActors.Reporting;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// A node without rank 0 has no progress bar: every fifth progress report it prints a compact
/// status line (epoch, step, steps per second since the last line) instead.
/// </summary>
internal sealed class NodeStatusLine(string nodeName, NodeOutput output)
{
    private const int Every = 5;
    private int _ticks;
    private long _stepsAtLast;
    private DateTime _lastAt;

    /// <summary>One progress report of the node's trainers; <paramref name="first"/> is its first trainer's progress.</summary>
    public void Tick(RankProgress[] ranks, TrainerProgress first, int epochs)
    {
        if (++_ticks % Every != 0 || ranks.Any(r => r.Rank == 0)) return;
        var now = DateTime.UtcNow;
        var steps = ranks.Min(r => r.Step);
        var rate = _lastAt == default ? 0 : (steps - _stepsAtLast) / (now - _lastAt).TotalSeconds;
        _stepsAtLast = steps;
        _lastAt = now;
        var (epoch, stepInEpoch, stepsPerEpoch) = first.Position();
        output.Status(StatusLine.Compact(nodeName, epoch, epochs, stepInEpoch, stepsPerEpoch, rate));
    }
}
