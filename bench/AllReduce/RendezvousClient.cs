using System.Globalization;
using System.Net.Sockets;
using System.Text.Json;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// The side of the multi-host mode (<see cref="Rendezvous"/>) that every rank but 0 runs: connects
/// to rank 0 (retrying while rank 0 is not up yet), says hello, waits for the peer list, reports its
/// result and waits for the word that everyone has.
/// </summary>
internal sealed class RendezvousClient(RunSpec spec, int rank, string host, int port) : IWorkerLink, IDisposable
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(250);

    private readonly CancellationTokenSource abandoned = new();
    private readonly TaskCompletionSource done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private LineConnection? connection;

    public CancellationToken Abandoned => abandoned.Token;

    public string? AbandonReason { get; private set; }

    private string Rendezvous0 => $"{host}:{port.ToString(CultureInfo.InvariantCulture)}";

    public async Task<string[]> ReadyAsync(string address, CancellationToken cancellationToken)
    {
        var rendezvous = connection = await ConnectAsync(cancellationToken);
        await rendezvous.WriteLineAsync($"{Rendezvous.Hello} {rank.ToString(CultureInfo.InvariantCulture)} {Rendezvous.Config(spec)} {address}", cancellationToken);
        string? line = await rendezvous.ReadLineAsync(Rendezvous.MaxControlBytes, cancellationToken);
        var words = line?.Split(' ') ?? [];
        if (words is [Rendezvous.Error, ..])
        {
            throw new RendezvousException($"The rendezvous (rank 0) called the run off: {line![(Rendezvous.Error.Length + 1)..]}");
        }

        if (words is not [Rendezvous.Peers, .. var peers] || peers.Length != spec.Nodes + 1)
        {
            throw new RendezvousException(line is null
                ? "The rendezvous (rank 0) closed the connection before sending the peer list."
                : $"The rendezvous sent {Rendezvous.Quote(line)}, expected 'peers TOKEN' and {spec.Nodes} addresses.");
        }

        _ = Task.Run(WatchAsync, CancellationToken.None);
        return peers;
    }

    /// <summary>After the peer list, rank 0 says only <c>done</c> or <c>error</c>; a closed connection is an error too.</summary>
    private async Task WatchAsync()
    {
        string reason;
        try
        {
            string? line = await connection!.ReadLineAsync(Rendezvous.MaxControlBytes, CancellationToken.None);
            if (line == Rendezvous.Done)
            {
                done.TrySetResult();
                return;
            }

            reason = line is null ? "The rendezvous (rank 0) closed the connection before the run ended."
                : line.StartsWith(Rendezvous.Error + " ", StringComparison.Ordinal) ? $"The run failed: {line[(Rendezvous.Error.Length + 1)..]}"
                : $"The rendezvous sent {Rendezvous.Quote(line)}, expected 'done' or 'error TEXT'.";
        }
        catch (Exception e) when (e is IOException or SocketException or RendezvousException)
        {
            reason = $"The connection to the rendezvous failed: {e.Message}";
        }

        AbandonReason = reason;
        done.TrySetException(new RendezvousException(reason));
        abandoned.Cancel();
    }

    private async Task<LineConnection> ConnectAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync(host, port, cancellationToken);
                return new LineConnection(socket);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.TimedOut or SocketError.HostUnreachable or SocketError.NetworkUnreachable)
            {
                // Rank 0 is not listening yet: the ranks start in any order.
                socket.Dispose();
            }
            catch (OperationCanceledException)
            {
                socket.Dispose();
                throw new RendezvousException($"Could not reach the rendezvous at {Rendezvous0} within --timeout {spec.Timeout.TotalSeconds:0} s.");
            }
            catch (SocketException e)
            {
                socket.Dispose();
                throw new RendezvousException($"Cannot connect to the rendezvous at {Rendezvous0}: {e.Message}");
            }

            try
            {
                await Task.Delay(RetryDelay, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                throw new RendezvousException($"Could not reach the rendezvous at {Rendezvous0} within --timeout {spec.Timeout.TotalSeconds:0} s.");
            }
        }
    }

    public async Task FinishAsync(WorkerResult result, CancellationToken cancellationToken)
    {
        var rendezvous = connection ?? throw new InvalidOperationException("Not connected to the rendezvous.");
        await rendezvous.WriteLineAsync($"{Rendezvous.Result} {JsonSerializer.Serialize(result, Protocol.Json)}", cancellationToken);
        await done.Task.WaitAsync(cancellationToken);
    }

    public void Fail(Exception error)
    {
        Console.Error.WriteLine($"error: {error.Message}");
        connection?.TryWriteLine($"{Rendezvous.Error} {error.Message}");
    }

    public void Dispose()
    {
        connection?.Dispose();
        // "abandoned" stays undisposed: it has no timer, and a reader still running may cancel it.
    }
}
