namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// A worker's line to whoever coordinates its run: the local launcher (<see cref="ParentLink"/>,
/// over stdin and stdout) or the rendezvous of the multi-host mode (<see cref="RendezvousHost"/> on
/// rank 0, <see cref="RendezvousClient"/> on the others). The measurement does not know which.
/// </summary>
internal interface IWorkerLink
{
    /// <summary>Cancelled when the run is given up elsewhere (another rank failed); <see cref="AbandonReason"/> says why.</summary>
    CancellationToken Abandoned { get; }

    string? AbandonReason { get; }

    /// <summary>Reports this worker's data-plane address; returns [token, address of rank 0, rank 1, ...].</summary>
    Task<string[]> ReadyAsync(string address, CancellationToken cancellationToken);

    /// <summary>Reports this worker's result; completes once every worker has reported, so tearing down drops nothing.</summary>
    Task FinishAsync(WorkerResult result, CancellationToken cancellationToken);

    /// <summary>Reports that this worker failed.</summary>
    void Fail(Exception error);
}
