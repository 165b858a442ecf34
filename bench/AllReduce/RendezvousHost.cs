using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// Rank 0's side of the multi-host mode (<see cref="Rendezvous"/>): listens on the rendezvous port,
/// admits exactly one connection per other rank, hands out the peer list and a fresh token, and
/// gathers every rank's result for the result line. Any protocol violation ends the run with a
/// message naming it, sent to every rank that joined.
/// </summary>
internal sealed class RendezvousHost : IWorkerLink, IDisposable
{
    private readonly RunSpec spec;
    private readonly TcpListener listener;
    private readonly SortedDictionary<int, LineConnection> ranks = [];
    private readonly CancellationTokenSource abandoned = new();
    private Task<WorkerResult>[] results = [];

    private RendezvousHost(RunSpec spec, TcpListener listener)
    {
        this.spec = spec;
        this.listener = listener;
    }

    public CancellationToken Abandoned => abandoned.Token;

    public string? AbandonReason { get; private set; }

    /// <summary>Every rank's result, rank 0's first, once <see cref="FinishAsync"/> has completed.</summary>
    public IReadOnlyList<WorkerResult> Results { get; private set; } = [];

    /// <summary>Listens at once, so that a port in use fails the run before anything else starts.</summary>
    public static RendezvousHost Listen(RunSpec spec, IPEndPoint endpoint)
    {
        var listener = new TcpListener(endpoint);
        try
        {
            listener.Start();
        }
        catch (SocketException e)
        {
            throw new RendezvousException($"Cannot listen for the rendezvous on {endpoint}: {e.Message}");
        }

        return new RendezvousHost(spec, listener);
    }

    public async Task<string[]> ReadyAsync(string address, CancellationToken cancellationToken)
    {
        var addresses = new string[spec.Nodes];
        addresses[0] = address;
        try
        {
            while (ranks.Count < spec.Nodes - 1)
            {
                var connection = new LineConnection(await listener.AcceptSocketAsync(cancellationToken));
                var (rank, peerAddress) = await AdmitAsync(connection, cancellationToken);
                ranks.Add(rank, connection);
                addresses[rank] = peerAddress;
                Console.Error.WriteLine($"rendezvous: rank {rank} joined from {connection.Remote} ({ranks.Count} of {spec.Nodes - 1})");
            }
        }
        catch (OperationCanceledException) when (!Abandoned.IsCancellationRequested)
        {
            var missing = Enumerable.Range(1, spec.Nodes - 1).Where(r => !ranks.ContainsKey(r)).ToList();
            throw new RendezvousException(
                $"{(missing.Count == 1 ? "Rank" : "Ranks")} {string.Join(", ", missing)} did not join the rendezvous in time (--timeout {spec.Timeout.TotalSeconds:0} s).");
        }
        finally
        {
            // Exactly N−1 connections: whoever comes later is refused by the system.
            listener.Stop();
        }

        string token = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));
        string peers = $"{Rendezvous.Peers} {token} {string.Join(' ', addresses)}";
        foreach (var connection in ranks.Values)
        {
            await connection.WriteLineAsync(peers, cancellationToken);
        }

        results = [.. ranks.Select(pair => ReceiveResultAsync(pair.Key, pair.Value))];
        return [token, .. addresses];
    }

    /// <summary>Reads and checks one connection's hello: its rank and data-plane address.</summary>
    private async Task<(int Rank, string Address)> AdmitAsync(LineConnection connection, CancellationToken cancellationToken)
    {
        string from = connection.Remote;
        try
        {
            using var helloTimeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            helloTimeout.CancelAfter(Rendezvous.HelloTimeout);
            string? line;
            try
            {
                line = await connection.ReadLineAsync(Rendezvous.MaxHelloBytes, helloTimeout.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new RendezvousException($"{from} connected but sent no hello within {Rendezvous.HelloTimeout.TotalSeconds:0} s.");
            }

            var words = line?.Split(' ') ?? [];
            if (words is not [Rendezvous.Hello, var rankText, var config, var address])
            {
                throw new RendezvousException($"{from} sent {(line is null ? "nothing" : Rendezvous.Quote(line))}, expected 'hello RANK CONFIG ADDRESS'.");
            }

            if (!int.TryParse(rankText, NumberStyles.None, CultureInfo.InvariantCulture, out int rank))
            {
                throw new RendezvousException($"{from} sent rank {Rendezvous.Quote(rankText)}, which is not a number.");
            }

            if (rank == 0)
            {
                throw new RendezvousException($"{from} claims rank 0, which is this node (the rendezvous host).");
            }

            if (rank >= spec.Nodes)
            {
                throw new RendezvousException($"{from} claims rank {rank}, outside 0..{spec.Nodes - 1} (--nodes {spec.Nodes}).");
            }

            if (ranks.TryGetValue(rank, out var first))
            {
                throw new RendezvousException($"Rank {rank} joined twice: from {first.Remote} and from {from}.");
            }

            string mine = Rendezvous.Config(spec);
            if (config != mine)
            {
                throw new RendezvousException($"Rank {rank} ({from}) was started with other settings: {Rendezvous.Differences(mine, config)}.");
            }

            return (rank, address);
        }
        catch (RendezvousException e)
        {
            connection.TryWriteLine($"{Rendezvous.Error} {e.Message}");
            connection.Dispose();
            throw;
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            connection.Dispose();
            throw new RendezvousException($"{from} broke off its hello: {e.Message}");
        }
    }

    private async Task<WorkerResult> ReceiveResultAsync(int rank, LineConnection connection)
    {
        try
        {
            string? line = await connection.ReadLineAsync(Rendezvous.MaxResultBytes, CancellationToken.None);
            int space = line?.IndexOf(' ') ?? -1;
            var (kind, rest) = line is null ? ("", "") : space < 0 ? (line, "") : (line[..space], line[(space + 1)..]);
            switch (kind)
            {
                case Rendezvous.Result:
                    var result = JsonSerializer.Deserialize<WorkerResult>(rest, Protocol.Json)
                        ?? throw new RendezvousException($"Rank {rank} sent an empty result.");
                    return result.Rank == rank ? result : throw new RendezvousException($"Rank {rank} sent the result of rank {result.Rank}.");
                case Rendezvous.Error:
                    throw new RendezvousException($"Rank {rank} failed: {rest}");
                case "":
                    throw new RendezvousException($"Rank {rank} ({connection.Remote}) closed the connection before it reported.");
                default:
                    throw new RendezvousException($"Rank {rank} sent {Rendezvous.Quote(line!)}, expected 'result JSON' or 'error TEXT'.");
            }
        }
        catch (Exception e) when (e is IOException or SocketException or JsonException or RendezvousException)
        {
            string reason = e is RendezvousException ? e.Message : $"Rank {rank}'s connection failed: {e.Message}";
            Abandon(reason);
            throw new RendezvousException(reason);
        }
    }

    private void Abandon(string reason)
    {
        lock (abandoned)
        {
            if (AbandonReason is not null)
            {
                return;
            }

            AbandonReason = reason;
        }

        abandoned.Cancel();
    }

    public async Task FinishAsync(WorkerResult result, CancellationToken cancellationToken)
    {
        var others = await Task.WhenAll(results).WaitAsync(cancellationToken);
        foreach (var connection in ranks.Values)
        {
            await connection.WriteLineAsync(Rendezvous.Done, cancellationToken);
        }

        Results = [result, .. others];
    }

    public void Fail(Exception error)
    {
        Console.Error.WriteLine($"error: {error.Message}");
        foreach (var connection in ranks.Values)
        {
            connection.TryWriteLine($"{Rendezvous.Error} {error.Message}");
        }
    }

    public void Dispose()
    {
        listener.Stop();
        foreach (var connection in ranks.Values)
        {
            connection.Dispose();
        }

        // "abandoned" stays undisposed: it has no timer, and a reader still running may cancel it.
    }
}
