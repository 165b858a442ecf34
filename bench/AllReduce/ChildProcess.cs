using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace ActorTrain.Bench.AllReduce;

/// <summary>The launcher's handle on one worker process: its protocol lines, its last output, its lifetime.</summary>
internal sealed class ChildProcess : IDisposable
{
    private const int TailLines = 30;

    private readonly Process process;
    private readonly bool verbose;
    private readonly TaskCompletionSource<string> ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<WorkerResult> result = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Queue<string> tail = new();
    private readonly Task stdout;
    private readonly Task stderr;

    private ChildProcess(Process process, int rank, bool verbose)
    {
        this.process = process;
        Rank = rank;
        this.verbose = verbose;
        stdout = Task.Run(ReadStdoutAsync);
        stderr = Task.Run(ReadStderrAsync);
    }

    public int Rank { get; }

    /// <summary>The address the worker printed once it was listening.</summary>
    public Task<string> Ready => ready.Task;

    public Task<WorkerResult> Result => result.Task;

    public static ChildProcess Start(RunSpec spec, int rank, bool verbose)
    {
        var info = new ProcessStartInfo
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };

        // Started as "dotnet x.dll" or as the apphost: start the worker the same way.
        string self = Environment.ProcessPath ?? throw new InvalidOperationException("Cannot tell which executable this is.");
        info.FileName = self;
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            info.ArgumentList.Add(typeof(ChildProcess).Assembly.Location);
        }

        foreach (var arg in WorkerArguments(spec, rank))
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("The worker process did not start.");
        return new ChildProcess(process, rank, verbose);
    }

    private static IEnumerable<string> WorkerArguments(RunSpec spec, int rank)
    {
        string I(long v) => v.ToString(CultureInfo.InvariantCulture);
        yield return "worker";
        yield return "--rank"; yield return I(rank);
        yield return "--nodes"; yield return I(spec.Nodes);
        yield return "--bytes"; yield return I(spec.Bytes);
        yield return "--transport"; yield return spec.Transport.ToString().ToLowerInvariant();
        yield return "--iterations"; yield return I(spec.Iterations);
        yield return "--warmup"; yield return I(spec.Warmup);
        yield return "--chunk-bytes"; yield return I(spec.ChunkBytes);
        yield return "--timeout"; yield return I((long)Math.Ceiling(spec.Timeout.TotalSeconds));
        if (spec.AkkaWholeBucket) yield return "--akka-whole-bucket";
        yield return "--compression"; yield return ActorTrain.Sync.Compression.WireCompressionNames.ToName(spec.Compression);
        yield return "--report-every"; yield return I(spec.ReportEvery);
    }

    public void SendLine(string line)
    {
        process.StandardInput.WriteLine(line);
        process.StandardInput.Flush();
    }

    /// <summary>The worker's last lines of output, for error reports.</summary>
    public string Tail()
    {
        lock (tail)
        {
            return tail.Count == 0 ? $"    [rank {Rank}] (no output)" : string.Join(Environment.NewLine, tail.Select(l => $"    [rank {Rank}] {l}"));
        }
    }

    /// <summary>Closes the worker's stdin (its signal to exit), waits a little, then kills what is left.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        try
        {
            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // Already gone.
        }

        try
        {
            await process.WaitForExitAsync().WaitAsync(grace);
        }
        catch (TimeoutException)
        {
            Kill();
        }

        // Let the readers see the pipes close, so the last lines are in the tail.
        await Task.WhenAny(Task.WhenAll(stdout, stderr), Task.Delay(grace));
    }

    public void Dispose()
    {
        Kill();
        process.Dispose();
    }

    private void Kill()
    {
        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
            // Exited meanwhile.
        }
    }

    private async Task ReadStdoutAsync()
    {
        while (await process.StandardOutput.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith(Protocol.Prefix, StringComparison.Ordinal))
            {
                Note(line);
                continue;
            }

            var body = line[Protocol.Prefix.Length..];
            int space = body.IndexOf(' ');
            var (kind, rest) = space < 0 ? (body, "") : (body[..space], body[(space + 1)..]);
            switch (kind)
            {
                case Protocol.Ready:
                    ready.TrySetResult(rest);
                    break;
                case Protocol.Result:
                    var parsed = JsonSerializer.Deserialize<WorkerResult>(rest, Protocol.Json);
                    if (parsed is null) result.TrySetException(new InvalidOperationException($"Rank {Rank} sent an empty result."));
                    else result.TrySetResult(parsed);
                    break;
                case Protocol.Error:
                    Note(line);
                    var error = new InvalidOperationException($"Rank {Rank} failed: {rest}");
                    ready.TrySetException(error);
                    result.TrySetException(error);
                    break;
                default:
                    Note(line);
                    break;
            }
        }

        await process.WaitForExitAsync();
        var exited = new InvalidOperationException(
            $"Rank {Rank} exited with code {process.ExitCode} before it reported. Last output:{Environment.NewLine}{Tail()}");
        ready.TrySetException(exited);
        result.TrySetException(exited);
    }

    private async Task ReadStderrAsync()
    {
        while (await process.StandardError.ReadLineAsync() is { } line)
        {
            Note(line);
        }
    }

    private void Note(string line)
    {
        if (verbose)
        {
            Console.Error.WriteLine($"[rank {Rank}] {line}");
        }

        lock (tail)
        {
            tail.Enqueue(line);
            while (tail.Count > TailLines)
            {
                tail.Dequeue();
            }
        }
    }
}
