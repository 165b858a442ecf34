using ActorTrain.Cluster.Protocol;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// A node's trainers stopping for a next generation (a regroup, a lost quorum, a lost coordinator):
/// for which generation, and the state the node last reported them stopped in.
/// </summary>
internal sealed class NodeHalt(NodeTrainers trainers)
{
    /// <summary>The generation they stop (or stopped) for; -1 before any.</summary>
    public long For { get; private set; } = -1;

    /// <summary>What the node reported when they last all stopped.</summary>
    public NodeHalted? Last { get; private set; }

    /// <summary>Whether they stop (or stopped) for a generation after <paramref name="generation"/>.</summary>
    public bool Beyond(long generation) => For > generation;

    /// <summary>They stop for <paramref name="next"/>: their answers are collected afresh unless they stop for it already.</summary>
    public void Begin(long next)
    {
        if (For != next) trainers.ClearHalted();
        For = next;
    }

    /// <summary>The answer to a coordinator asking again for <paramref name="next"/>: the state they stopped in, once they have.</summary>
    public NodeHalted? Answer(long next) => Last?.NextGeneration == next ? Last : null;

    /// <summary>Every trainer stopped for the current <see cref="For"/>, and the node reported it.</summary>
    public bool Reported => Last is { } done && done.NextGeneration == For && trainers.AllHalted;

    /// <summary>A trainer stopped: the states of all of them once the last has stopped for <see cref="For"/>, else null.</summary>
    public TrainerHaltState[]? Halted(TrainerHalted halted) => halted.NextGeneration == For ? trainers.Halted(halted) : null;

    /// <summary>What the node reports of them; kept for a coordinator that asks again.</summary>
    public NodeHalted Report(string nodeName, TrainerHaltState[] states, string endpoint) => Last = new NodeHalted(For, nodeName, states, endpoint);
}
