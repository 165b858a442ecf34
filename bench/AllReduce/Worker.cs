namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// One ring peer (or one end of the socket ceiling) of one run, whether the local launcher started
/// it (<c>worker</c>) or the user did on some host (<c>node</c>): only the <see cref="IWorkerLink"/> differs.
/// </summary>
internal static class Worker
{
    public static async Task<int> RunAsync(RunSpec spec, int rank, IWorkerLink link)
    {
        using var deadline = new CancellationTokenSource(spec.Timeout);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, link.Abandoned);
        IWorkerRun? run = null;
        try
        {
            run = spec.Transport switch
            {
                BenchTransport.Akka => new AkkaWorker(spec, rank),
                BenchTransport.Tcp or BenchTransport.Shm => new TcpWorker(spec, rank),
                _ => new SocketWorker(spec, rank),
            };
            var peers = await link.ReadyAsync(run.Address, cancel.Token);
            if (peers.Length != spec.Processes + 1)
            {
                throw new InvalidOperationException($"Expected a token and {spec.Processes} addresses, got '{string.Join(' ', peers)}'.");
            }

            await run.ConnectAsync(peers[0], peers[1..], cancel.Token);
            var cpuBefore = Environment.CpuUsage.TotalTime;
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            var result = await run.MeasureAsync(cancel.Token) with
            {
                CpuSeconds = (Environment.CpuUsage.TotalTime - cpuBefore).TotalSeconds,
                WallSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds,
            };

            // Stay up until every worker has reported: Akka sends are fire-and-forget, and leaving
            // early could drop chunks a slower peer still waits for.
            await link.FinishAsync(result, cancel.Token);
            return 0;
        }
        catch (Exception e)
        {
            link.Fail(e switch
            {
                OperationCanceledException when link.AbandonReason is { } reason => new InvalidOperationException(reason),
                OperationCanceledException when deadline.IsCancellationRequested =>
                    new TimeoutException($"Rank {rank} gave up after {spec.Timeout.TotalSeconds:0} s (--timeout)."),
                _ => e,
            });
            return 1;
        }
        finally
        {
            if (run is not null)
            {
                try
                {
                    await run.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                }
                catch (Exception)
                {
                    // Exiting anyway: the process takes its sockets with it.
                }
            }
        }
    }
}
