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
