using Akka.Actor;

namespace ActorTrain.TrainerActors.Actors;

/// <summary>
/// A node's two cancellations: the run's (the node ends, or the process is asked to stop) and the
/// current generation's (its rings are over), which the run's cancels too.
/// </summary>
internal sealed class NodeCancellation
{
    private readonly CancellationTokenSource _run = new();
    private CancellationTokenSource _generation = new();
    private bool _broken;

    public CancellationToken Run => _run.Token;

    public CancellationToken Generation => _generation.Token;

    public bool RunCancelled => _run.IsCancellationRequested;

    public void CancelRun() => _run.Cancel();

    public void CancelGeneration() => _generation.Cancel();

    /// <summary>The generation broke: its trainers are released now. True the first time only: the node reports it once.</summary>
    public bool BreakGeneration()
    {
        if (_broken) return false;
        _broken = true;
        _generation.Cancel();
        return true;
    }

    /// <summary>The previous generation's rings are over; the next one gets a fresh token.</summary>
    public void NextGeneration()
    {
        _broken = false;
        _generation.Cancel();
        _generation = CancellationTokenSource.CreateLinkedTokenSource(_run.Token);
    }

    /// <summary>
    /// However the process is asked to stop, trainers blocked in a collective are released first:
    /// a pinned trainer stuck waiting for a dead peer would otherwise hold up the shutdown.
    /// </summary>
    public void CancelOnShutdown(ActorSystem system)
    {
        var run = _run;
        CoordinatedShutdown.Get(system).AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "cancel-training", () =>
        {
            run.Cancel();
            return Task.FromResult(Akka.Done.Instance);
        });
    }
}
