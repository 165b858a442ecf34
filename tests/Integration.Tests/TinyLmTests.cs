using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace ActorTrain.Integration.Tests;

/// <summary>
/// The TinyLM example (examples/TinyLM, a 5.7 M-parameter byte-level transformer on Debian's
/// fortunes) as a user runs it: `local --nodes 2`, one short epoch, two real node processes.
/// </summary>
[Collection(ProcessCollection.Name)]
public sealed class TinyLmTests
{
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(3);

    // 384 windows at the example's batch of 8 per trainer: 24 steps on 2 nodes.
    private const int SamplesPerEpoch = 384;
    private const int ExpectedSteps = SamplesPerEpoch / (2 * 8);

    [Fact]
    public async Task Two_nodes_train_the_language_model_one_short_epoch_to_equal_replicas_and_a_falling_loss()
    {
        var outDir = Repo.TempDir();
        using var launcher = NodeProcess.StartProgram("tinylm", ExampleDll, new Dictionary<string, string>(),
            "local", "--nodes", "2", "--epochs", "1", "--out", outDir, "--no-progress",
            "--set", $"actortrain.job.samples-per-epoch={SamplesPerEpoch.ToString(CultureInfo.InvariantCulture)}");
        var code = await launcher.WaitForExitAsync(RunTimeout);
        var output = launcher.Output;
        Assert.True(code == 0, $"exit code {code}\n{Tail(output)}");
        Assert.Contains("local: all nodes ended (exit codes 0, 0)", output);

        // The model is as large as the example promises: at least 5 M parameters, a gradient of 20 MB or more.
        var described = Regex.Match(output, @"tinylm: ([\d,]+) parameters");
        Assert.True(described.Success, $"no parameter count printed:\n{Tail(output)}");
        Assert.True(long.Parse(described.Groups[1].Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture) >= 5_000_000, described.Value);

        using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "run-report.json")));
        var r = report.RootElement;
        Assert.Equal("tinylm", r.GetProperty("job_id").GetString());
        Assert.Equal(2, r.GetProperty("world_size").GetInt32());
        Assert.Equal(ExpectedSteps, r.GetProperty("steps").GetInt64());
        var checksums = r.GetProperty("replica_checksums").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        Assert.Equal(["0", "1"], checksums.Keys.Order());
        Assert.Single(checksums.Values.Distinct());
        Assert.True(r.GetProperty("replicas_equal").GetBoolean());

        // The loss falls: rank 0's logged losses (every 8 steps) end well below where they began.
        var curve = r.GetProperty("loss_curve").EnumerateArray().Select(p => p.GetProperty("loss").GetDouble()).ToList();
        Assert.True(curve.Count >= 2, $"loss curve has {curve.Count} point(s)");
        Assert.True(curve[^1] < curve[0] - 0.5, $"the training loss went from {curve[0]} to {curve[^1]}");

        // The job's own metrics, not an assumed accuracy: held-out loss in nats and bits per byte.
        // A model that learned nothing predicts 256 bytes alike: 8 bits per byte.
        var valLoss = r.GetProperty("val_loss").GetDouble();
        var valBpc = r.GetProperty("val_bpc").GetDouble();
        Assert.Equal(valLoss / Math.Log(2), valBpc, 6);
        Assert.InRange(valBpc, 1.0, 6.5);
        Assert.False(r.TryGetProperty("test_accuracy", out _), "the language model reports no classification accuracy");
        Assert.True(File.Exists(Path.Combine(outDir, "val_bpc.png")), "a plot per job metric");
        Assert.True(r.GetProperty("timings_ms").GetProperty("cross_node").GetDouble() > 0, "two nodes must reduce across nodes");
    }

    [Fact]
    public async Task A_job_setting_of_the_wrong_kind_is_a_usage_error_naming_the_key_and_where_it_came_from()
    {
        using var node = NodeProcess.StartProgram("tinylm-bad", ExampleDll,
            new Dictionary<string, string> { ["ACTORTRAIN__JOB__SAMPLES_PER_EPOCH"] = "many" }, "seed", "--no-progress", "--epochs", "1");
        Assert.Equal(2, await node.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("actortrain.job.samples-per-epoch", node.Output);
        Assert.Contains("ACTORTRAIN__JOB__SAMPLES_PER_EPOCH", node.Output);
        Assert.Contains("\"many\"", node.Output);
    }

    private static string ExampleDll
    {
        get
        {
            var path = Path.Combine(Repo.Root, "examples", "TinyLM", "bin", Repo.Configuration, "net10.0", "ActorTrain.TinyLM.dll");
            return File.Exists(path) ? path : throw new FileNotFoundException($"build the example first: {path} is missing", path);
        }
    }

    private static string Tail(string text) => text.Length <= 6000 ? text : "…" + text[^6000..];
}
