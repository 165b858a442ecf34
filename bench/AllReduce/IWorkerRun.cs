namespace ActorTrain.Bench.AllReduce;

/// <summary>One worker process's part of a run, whatever the transport.</summary>
internal interface IWorkerRun : IAsyncDisposable
{
    /// <summary>What the other workers need to reach this one (printed to the launcher).</summary>
    string Address { get; }

    /// <summary>Connects to the others; <paramref name="peers"/> holds every worker's address in rank order.</summary>
    Task ConnectAsync(string token, IReadOnlyList<string> peers, CancellationToken cancellationToken);

    /// <summary>Warm-up and timed iterations.</summary>
    Task<WorkerResult> MeasureAsync(CancellationToken cancellationToken);
}
