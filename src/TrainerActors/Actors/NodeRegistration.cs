using ActorTrain.Cluster.Protocol;
using Akka.Actor;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// A node's registration: it registers again every <paramref name="interval"/> until a coordinator
/// answers, and the first registration gives up after <paramref name="startupTimeout"/> (none when
/// zero), with <see cref="Unanswered"/>. After its coordinator's seed is lost it registers again
/// with the state its trainers stopped in (<see cref="Rejoin"/>), once they have stopped.
/// </summary>
internal sealed class NodeRegistration(ITimerScheduler timers, TimeSpan interval, TimeSpan startupTimeout)
{
    private const string RetryTimer = "register", UnansweredTimer = "unanswered";

    /// <summary>What the node registers again with, until its next world.</summary>
    public NodeRejoin? Rejoin { get; private set; }

    /// <summary>The node registers again once its trainers have stopped.</summary>
    public bool OnceHalted { get; set; }

    /// <summary>Whether a retry goes out: before the first world, or while registering again.</summary>
    public bool Retrying(bool hasWorld) => !hasWorld || Rejoin is not null;

    /// <summary>Registers (again) with the state the trainers stopped in, retried until answered.</summary>
    public void BeginRejoin(NodeRejoin rejoin)
    {
        OnceHalted = false;
        Rejoin = rejoin;
    }

    /// <summary>A world came: the rejoin is over.</summary>
    public void Joined() => Rejoin = null;

    /// <summary>The first registration: retried, and given up on after the startup timeout.</summary>
    public void Begin()
    {
        Retry();
        if (startupTimeout > TimeSpan.Zero) timers.StartSingleTimer(UnansweredTimer, Unanswered.Instance, startupTimeout);
    }

    /// <summary>A registration (again) with a coordinator that took over: retried until answered.</summary>
    public void Retry() => timers.StartPeriodicTimer(RetryTimer, Again.Instance, interval);

    /// <summary>A coordinator answered (or the node stops registering).</summary>
    public void Stop()
    {
        timers.Cancel(RetryTimer);
        timers.Cancel(UnansweredTimer);
    }

    /// <summary>Cut off from the majority: the node registers no more (it waits), but still ends if nobody answered in time.</summary>
    public void Suspend()
    {
        OnceHalted = false;
        timers.Cancel(RetryTimer);
    }

    /// <summary>Time to register again.</summary>
    public sealed class Again { public static readonly Again Instance = new(); private Again() { } }

    /// <summary>No coordinator answered within the startup timeout.</summary>
    public sealed class Unanswered { public static readonly Unanswered Instance = new(); private Unanswered() { } }
}
