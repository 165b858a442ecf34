using System.Globalization;
using System.Text.Json;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// Smoke tests of bench/AllReduce: short runs of each transport between real processes on
/// 127.0.0.1, checking the result line and the JSON record (not the figures).
/// </summary>
[Collection(ProcessCollection.Name)]
public class AllReduceBenchTests
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromSeconds(60);
    private const int OneMiB = 1 << 20;

    [Theory]
    [InlineData("tcp")]
    [InlineData("akka")]
    [InlineData("socket")]
    public async Task A_short_local_run_prints_a_result_line_and_a_JSON_record(string transport)
    {
        var json = Path.Combine(Repo.TempDir(), "runs.jsonl");
        using var bench = NodeProcess.StartBench($"allreduce-{transport}", "allreduce", "--nodes", "2", "--bytes", "1MiB",
            "--transport", transport, "--iterations", "3", "--warmup", "1", "--timeout", "45", "--json", json);

        var code = await bench.WaitForExitAsync(RunTimeout);
        Assert.True(code == 0, $"exit code {code}\n{bench.Tail()}");
        AssertResultLine(bench.Output, nodes: 2, OneMiB, transport);

        var record = Assert.Single(File.ReadAllLines(json));
        using var parsed = JsonDocument.Parse(record);
        var r = parsed.RootElement;
        Assert.True(r.GetProperty("ok").GetBoolean());
        Assert.Equal(2, r.GetProperty("nodes").GetInt32());
        Assert.Equal(OneMiB, r.GetProperty("bytes").GetInt64());
        Assert.Equal(transport, r.GetProperty("transport").GetString());
        Assert.Equal(3, r.GetProperty("times_ms").GetArrayLength());
        AssertPositive(r.GetProperty("mean_ms").GetDouble(), "mean_ms");
        AssertPositive(r.GetProperty("busbw_GBps").GetDouble(), "busbw_GBps");
    }

    [Theory]
    [InlineData("tcp", 2)]
    [InlineData("tcp", 3)]
    [InlineData("akka", 2)]
    [InlineData("socket", 2)]
    public async Task Nodes_started_one_by_one_meet_at_the_rendezvous_and_rank_0_prints_the_result(string transport, int nodes)
    {
        var json = Path.Combine(Repo.TempDir(), "runs.jsonl");
        var rendezvous = $"127.0.0.1:{NodeProcess.FreePort()}";
        var ranks = new List<NodeProcess>();
        try
        {
            // The others first: they wait for rank 0 to listen.
            for (int rank = nodes - 1; rank >= 0; rank--)
            {
                ranks.Add(NodeProcess.StartBench($"node{rank}", NodeArguments(rank, nodes, rendezvous, transport, rank == 0 ? json : null)));
            }

            var codes = await Task.WhenAll(ranks.Select(r => r.WaitForExitAsync(RunTimeout)));
            Assert.True(codes.All(c => c == 0), $"exit codes {string.Join(",", codes)}\n" + string.Join("\n", ranks.Select(r => $"{r.Name}:\n{r.Tail()}")));
            var rank0 = ranks[^1];
            AssertResultLine(rank0.Output, nodes, OneMiB, transport);
            using var parsed = JsonDocument.Parse(Assert.Single(File.ReadAllLines(json)));
            Assert.Equal(nodes, parsed.RootElement.GetProperty("nodes").GetInt32());
            Assert.True(parsed.RootElement.GetProperty("ok").GetBoolean());

            // Only rank 0 reports the run.
            foreach (var other in ranks.Take(nodes - 1))
            {
                Assert.DoesNotContain("mean_ms", other.Output);
            }
        }
        finally
        {
            foreach (var r in ranks)
            {
                r.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_node_with_a_rank_outside_the_ring_or_a_rendezvous_hello_claiming_one_fails_at_once_naming_it()
    {
        var rendezvous = $"127.0.0.1:{NodeProcess.FreePort()}";
        using (var outside = NodeProcess.StartBench("rank-2-of-2", NodeArguments(2, 2, rendezvous, "tcp", null)))
        {
            Assert.Equal(2, await outside.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Contains("--rank must be in 0..1 (--nodes 2), got 2", outside.Output);
        }

        // Rank 0 is strict about who joins: a hello claiming rank 7 of 2 ends the run, named.
        using var rank0 = NodeProcess.StartBench("node0", NodeArguments(0, 2, rendezvous, "tcp", null));
        var port = int.Parse(rendezvous.Split(':')[1], CultureInfo.InvariantCulture);
        var refusal = await SendHelloAsync(port, "hello 7 nodes=2 127.0.0.1:1", TimeSpan.FromSeconds(30));
        Assert.Equal(1, await rank0.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("claims rank 7, outside 0..1 (--nodes 2)", rank0.Output);
        Assert.StartsWith("error ", refusal);
        Assert.Contains("claims rank 7", refusal);
    }

    private static string[] NodeArguments(int rank, int nodes, string rendezvous, string transport, string? json)
    {
        var args = new List<string>
        {
            "node", "--rank", rank.ToString(CultureInfo.InvariantCulture), "--nodes", nodes.ToString(CultureInfo.InvariantCulture),
            "--rendezvous", rendezvous, "--bind", "127.0.0.1", "--bytes", "1MiB", "--transport", transport,
            "--iterations", "3", "--warmup", "1", "--timeout", "45",
        };
        if (json is not null)
        {
            args.AddRange(["--json", json]);
        }

        return [.. args];
    }

    /// <summary>Connects to a rendezvous (retrying until it listens), sends one line and returns the answer.</summary>
    private static async Task<string> SendHelloAsync(int port, string line, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            using var client = new System.Net.Sockets.TcpClient();
            try
            {
                await client.ConnectAsync(System.Net.IPAddress.Loopback, port, cts.Token);
            }
            catch (System.Net.Sockets.SocketException)
            {
                await Task.Delay(200, cts.Token);
                continue;
            }

            var stream = client.GetStream();
            await stream.WriteAsync(System.Text.Encoding.UTF8.GetBytes(line + "\n"), cts.Token);
            using var reader = new StreamReader(stream);
            return await reader.ReadLineAsync(cts.Token) ?? "";
        }
    }

    /// <summary>Finds "nodes, bytes, transport, mean_ms, algbw_GBps, busbw_GBps" for this run and checks it.</summary>
    internal static void AssertResultLine(string output, int nodes, long bytes, string transport)
    {
        var prefix = string.Create(CultureInfo.InvariantCulture, $"{nodes}, {bytes}, {transport}, ");
        var line = output.Split('\n').SingleOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
        Assert.True(line is not null, $"no result line starting '{prefix}' in:\n{output}");
        var fields = line.Split(", ");
        Assert.True(fields.Length == 6, $"expected 6 fields, got: {line}");
        AssertPositive(double.Parse(fields[3], CultureInfo.InvariantCulture), "mean_ms");
        AssertPositive(double.Parse(fields[4], CultureInfo.InvariantCulture), "algbw_GBps");
        AssertPositive(double.Parse(fields[5], CultureInfo.InvariantCulture), "busbw_GBps");
    }

    private static void AssertPositive(double value, string name) =>
        Assert.True(double.IsFinite(value) && value > 0, $"{name} is {value}");
}
