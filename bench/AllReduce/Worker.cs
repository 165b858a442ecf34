namespace ActorTrain.Bench.AllReduce;

/// <summary>The worker process: one ring peer (or one end of the socket ceiling) of one run.</summary>
internal static class Worker
{
    public static async Task<int> RunAsync(RunSpec spec, int rank)
    {
        var link = ParentLink.Start();
        using var deadline = new CancellationTokenSource(spec.Timeout);
        IWorkerRun? run = null;
        try
        {
            run = spec.Transport switch
            {
                BenchTransport.Akka => new AkkaWorker(spec, rank),
                BenchTransport.Tcp => new TcpWorker(spec, rank),
                _ => new SocketWorker(spec, rank),
            };
            ParentLink.SendReady(run.Address);
            var peers = await link.Peers.WaitAsync(deadline.Token);
            if (peers.Length != spec.Processes + 1)
            {
                throw new InvalidOperationException($"Expected a token and {spec.Processes} addresses, got '{string.Join(' ', peers)}'.");
            }

            await run.ConnectAsync(peers[0], peers[1..], deadline.Token);
            var cpuBefore = Environment.CpuUsage.TotalTime;
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            var result = await run.MeasureAsync(deadline.Token) with
            {
                CpuSeconds = (Environment.CpuUsage.TotalTime - cpuBefore).TotalSeconds,
                WallSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds,
            };
            link.SendResult(result);

            // Stay up until every worker has reported: Akka sends are fire-and-forget, and leaving
            // early could drop chunks a slower peer still waits for.
            await link.Closed.WaitAsync(deadline.Token);
            return 0;
        }
        catch (Exception e)
        {
            ParentLink.SendError(e);
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
