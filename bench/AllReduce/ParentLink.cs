using System.Text.Json;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// The line protocol between the launcher and its worker processes. A worker prints
/// <c>@@atb ready ADDRESS</c> once it listens, reads <c>peers TOKEN ADDRESS...</c> from stdin,
/// prints <c>@@atb result JSON</c> (or <c>@@atb error TEXT</c>) and exits when its stdin closes.
/// Other output (Akka's logger writes to stdout too) is not part of the protocol.
/// </summary>
internal static class Protocol
{
    public const string Prefix = "@@atb ";
    public const string Ready = "ready";
    public const string Result = "result";
    public const string Error = "error";
    public const string Peers = "peers";

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = false,
    };
}

/// <summary>What one worker measured.</summary>
/// <param name="Rank">The worker's ring position.</param>
/// <param name="TimesMs">Wall time of each timed iteration on this worker.</param>
/// <param name="BytesSent">Bytes this worker's transport sent, where it counts them (tcp), else 0.</param>
/// <param name="CpuSeconds">CPU time (user + system) this process used during warm-up and timed iterations.</param>
/// <param name="WallSeconds">Wall time of warm-up and timed iterations, checks and barriers included.</param>
/// <param name="Samples">Steady-state mode: the worker's memory figures every RunSpec.ReportEvery iterations (the first before any).</param>
internal sealed record WorkerResult(int Rank, double[] TimesMs, long BytesSent, double CpuSeconds = 0, double WallSeconds = 0, MemorySample[]? Samples = null);

/// <summary>A process's memory figures after <paramref name="Iterations"/> all-reduces (warm-up included).</summary>
/// <param name="AllocatedBytes">GC.GetTotalAllocatedBytes(precise: true): managed bytes allocated since the process started.</param>
/// <param name="WorkingSetBytes">Process.WorkingSet64: resident memory, native allocations included.</param>
/// <param name="HeapBytes">Managed heap size after the last GC (GCMemoryInfo.HeapSizeBytes).</param>
internal sealed record MemorySample(int Iterations, int Gen0, int Gen1, int Gen2, long AllocatedBytes, long WorkingSetBytes, long HeapBytes)
{
    public static MemorySample Now(int iterations)
    {
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        return new MemorySample(iterations, GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2),
            GC.GetTotalAllocatedBytes(precise: true), self.WorkingSet64, GC.GetGCMemoryInfo().HeapSizeBytes);
    }
}

/// <summary>
/// A worker's side of the protocol. The parent's end of stdin is the lifeline: when it closes
/// (the parent finished, failed or was killed), the worker exits, so no worker outlives a run.
/// </summary>
internal sealed class ParentLink : IWorkerLink
{
    private readonly TaskCompletionSource<string[]> peers = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool finished;

    private ParentLink()
    {
    }

    /// <summary>The parent's peers line, split: [token, address0, address1, ...].</summary>
    public Task<string[]> Peers => peers.Task;

    /// <summary>Completes when the parent closes stdin after every worker has reported.</summary>
    public Task Closed => closed.Task;

    public static ParentLink Start()
    {
        var link = new ParentLink();
        var watcher = new Thread(link.WatchStdin) { IsBackground = true, Name = "parent-link" };
        watcher.Start();
        return link;
    }

    /// <summary>Never: when the launcher gives up, it closes stdin and the worker exits.</summary>
    public CancellationToken Abandoned => CancellationToken.None;

    public string? AbandonReason => null;

    public async Task<string[]> ReadyAsync(string address, CancellationToken cancellationToken)
    {
        Send($"{Protocol.Ready} {address}");
        return await Peers.WaitAsync(cancellationToken);
    }

    public async Task FinishAsync(WorkerResult result, CancellationToken cancellationToken)
    {
        Send($"{Protocol.Result} {JsonSerializer.Serialize(result, Protocol.Json)}");
        finished = true;
        await Closed.WaitAsync(cancellationToken);
    }

    public void Fail(Exception error) =>
        Send($"{Protocol.Error} {error.GetType().Name}: {error.Message}".ReplaceLineEndings(" | "));

    private static void Send(string line)
    {
        lock (Console.Out)
        {
            Console.Out.WriteLine(Protocol.Prefix + line);
            Console.Out.Flush();
        }
    }

    private void WatchStdin()
    {
        try
        {
            while (Console.In.ReadLine() is { } line)
            {
                var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (words is [Protocol.Peers, .. var rest])
                {
                    peers.TrySetResult(rest);
                }
            }
        }
        catch (IOException)
        {
            // A broken pipe is a closed pipe.
        }

        closed.TrySetResult();
        peers.TrySetException(new IOException("The launcher closed stdin before sending the peer list."));
        if (!finished)
        {
            // The launcher is gone or gave up on this run: do not linger.
            Environment.Exit(3);
        }
    }
}
