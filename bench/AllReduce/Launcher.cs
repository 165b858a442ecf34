using System.Security.Cryptography;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// Runs one measurement: starts the worker processes on 127.0.0.1, hands each the full peer list
/// (and a fresh data-plane token) once all listen, collects their timings, and makes sure none
/// outlives the run — on success, failure, timeout or Ctrl+C.
/// </summary>
internal static class Launcher
{
    /// <summary>
    /// Runs <paramref name="spec"/> <paramref name="repeat"/> times and keeps the fastest successful
    /// run: on a shared machine, other work only ever slows a run down.
    /// </summary>
    public static async Task<RunResult> RunBestOfAsync(RunSpec spec, int repeat, bool verbose, CancellationToken cancellationToken)
    {
        RunResult? best = null;
        for (int attempt = 0; attempt < Math.Max(1, repeat); attempt++)
        {
            var result = await RunAsync(spec, verbose, cancellationToken);
            if (best is null || (result.Ok && (!best.Ok || result.MeanMs < best.MeanMs)))
            {
                best = result;
            }
        }

        return best!;
    }

    public static async Task<RunResult> RunAsync(RunSpec spec, bool verbose, CancellationToken cancellationToken)
    {
        spec.Validate();
        var children = new List<ChildProcess>();
        using var timeout = new CancellationTokenSource(spec.Timeout);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            for (int rank = 0; rank < spec.Processes; rank++)
            {
                children.Add(ChildProcess.Start(spec, rank, verbose));
            }

            var addresses = await AllOrFirstFailure(children.Select(c => c.Ready).ToArray(), linked.Token);
            string token = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));
            var before = MachineLoad.Now();
            foreach (var child in children)
            {
                child.SendLine($"{Protocol.Peers} {token} {string.Join(' ', addresses)}");
            }

            var results = await AllOrFirstFailure(children.Select(c => c.Result).ToArray(), linked.Token);
            var (busy, wall) = MachineLoad.Now().Since(before);
            return RunResult.From(spec, results) with { MachineBusySeconds = busy, WindowSeconds = wall };
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return new RunResult(spec, [], $"timed out after {spec.Timeout.TotalSeconds:0} s" + Tails(children, verbose));
        }
        catch (InvalidOperationException e)
        {
            return new RunResult(spec, [], e.Message + Tails(children, verbose));
        }
        finally
        {
            await Task.WhenAll(children.Select(c => c.StopAsync(TimeSpan.FromSeconds(10))));
            foreach (var child in children)
            {
                child.Dispose();
            }
        }
    }

    private static string Tails(List<ChildProcess> children, bool verbose) =>
        verbose ? "" : Environment.NewLine + string.Join(Environment.NewLine, children.Select(c => c.Tail()));

    /// <summary>Like Task.WhenAll, but a failing worker fails the run at once instead of after the others time out.</summary>
    private static async Task<T[]> AllOrFirstFailure<T>(Task<T>[] tasks, CancellationToken cancellationToken)
    {
        var remaining = tasks.ToList<Task>();
        while (remaining.Count > 0)
        {
            var done = await Task.WhenAny(remaining).WaitAsync(cancellationToken);
            await done;
            remaining.Remove(done);
        }

        return [.. tasks.Select(t => t.Result)];
    }
}
