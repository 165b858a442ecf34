using System.Globalization;
using System.Net;

namespace ActorTrain.Bench.AllReduce;

/// <summary>
/// The multi-host mode: one rank of a run, started by the user on its host. Rank 0 is also the
/// rendezvous (<see cref="RendezvousHost"/>) and prints the run's result line; the measurement is
/// the local workers' (<see cref="Worker"/>).
/// </summary>
internal static class Node
{
    /// <summary>What the ranks are given, beyond the measurement itself, to start on several hosts by hand.</summary>
    public static readonly TimeSpan StartAllowance = TimeSpan.FromMinutes(2);

    /// <summary>Checks the settings only a node has; throws ArgumentException naming the one that is wrong.</summary>
    public static void Validate(RunSpec spec, int rank)
    {
        spec.Validate();
        if (spec.Nodes < 2) throw new ArgumentException($"--nodes must be at least 2 in node mode, got {spec.Nodes}");
        if (rank < 0 || rank >= spec.Nodes) throw new ArgumentException($"--rank must be in 0..{spec.Nodes - 1} (--nodes {spec.Nodes}), got {rank}");
        if (spec.Transport == BenchTransport.Socket && spec.Nodes != 2)
            throw new ArgumentException($"--transport socket runs between exactly 2 nodes, got --nodes {spec.Nodes}");
        if (spec.Bind.Equals(IPAddress.Any) || spec.Bind.Equals(IPAddress.IPv6Any))
            throw new ArgumentException($"--bind must be an address of this host that the other nodes can reach, not the wildcard {spec.Bind}");
    }

    public static IPAddress ParseBind(string text) => IPAddress.TryParse(text, out var address)
        ? address
        : throw new ArgumentException($"--bind must be an IP address, got '{text}'");

    /// <summary>HOST:PORT, HOST a name or an address ([brackets] around IPv6).</summary>
    public static (string Host, int Port) ParseRendezvous(string text)
    {
        int colon = text.LastIndexOf(':');
        string host = colon > 0 ? text[..colon].Trim('[', ']') : "";
        if (host.Length == 0 || !int.TryParse(text[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port is < 1 or > 65535)
        {
            throw new ArgumentException($"--rendezvous must be HOST:PORT with a port in 1..65535, got '{text}'");
        }

        return (host, port);
    }

    /// <summary>Runs this rank; on rank 0 prints the result line and appends the JSON record.</summary>
    public static async Task<int> RunAsync(RunSpec spec, int rank, string host, int port, string? json)
    {
        if (rank != 0)
        {
            using var client = new RendezvousClient(spec, rank, host, port);
            return await Worker.RunAsync(spec, rank, client);
        }

        // Rank 0 listens on its own data-plane address: the one the others were told to reach.
        using var rendezvous = RendezvousHost.Listen(spec, new IPEndPoint(spec.Bind, port));
        int code = await Worker.RunAsync(spec, rank, rendezvous);
        if (code != 0)
        {
            return code;
        }

        var result = RunResult.From(spec, rendezvous.Results);
        Console.WriteLine(RunResult.CsvHeader);
        Console.WriteLine(result.CsvLine);
        if (json is not null)
        {
            await File.AppendAllTextAsync(json, result.ToJson() + "\n");
        }

        return result.Ok ? 0 : 1;
    }
}
