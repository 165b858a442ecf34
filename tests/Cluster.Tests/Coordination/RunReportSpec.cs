using System.Text.Json;
using ActorTrain.Cluster.Coordination;
using ActorTrain.Cluster.Protocol;

namespace ActorTrain.Cluster.Tests.Coordination;

public sealed class RunReportSpec
{
    private static RunReport Report(IReadOnlyDictionary<string, double> last, IReadOnlyList<EpochRecord> epochs) => new()
    {
        JobId = "j", Status = "completed", WorldSize = 2, Nodes = [], Epochs = epochs.Count, Steps = 10, SkippedSteps = 0, GlobalBatch = 128,
        Seed = 1, FinalLoss = 0.5, Metrics = last, EpochHistory = epochs, ReplicaChecksums = new Dictionary<string, string>(), ReplicasEqual = true,
        TimingsMs = new ReportTimings(1, 2, 3, 4), TimingsMsPerRank = new Dictionary<string, ReportTimings>(), WallSeconds = 1,
    };

    [Fact]
    public void A_job_s_metrics_are_written_under_their_own_names_at_the_top_and_per_epoch()
    {
        var epochs = new[]
        {
            new EpochRecord(1, 5, 0.9, 0, new Dictionary<string, double> { ["test_mse"] = 4.25, ["test_mae"] = 1.5 }),
            new EpochRecord(2, 10, 0.5, 0, new Dictionary<string, double> { ["test_mse"] = 2.0, ["test_mae"] = double.NaN }),
        };
        using var json = JsonDocument.Parse(Report(epochs[1].Metrics, epochs).ToJson());
        var r = json.RootElement;

        Assert.Equal(2.0, r.GetProperty("test_mse").GetDouble());
        Assert.Equal("NaN", r.GetProperty("test_mae").GetString());
        Assert.Equal(4.25, r.GetProperty("epoch_history")[0].GetProperty("test_mse").GetDouble());
        Assert.Equal(1.5, r.GetProperty("epoch_history")[0].GetProperty("test_mae").GetDouble());
        Assert.False(r.TryGetProperty("test_accuracy", out _));
    }

    [Fact]
    public void A_report_read_back_has_the_same_metrics()
    {
        var epochs = new[] { new EpochRecord(1, 5, 0.9, 0, new Dictionary<string, double> { ["test_accuracy"] = 0.933 }) };
        var back = JsonSerializer.Deserialize<RunReport>(Report(epochs[0].Metrics, epochs).ToJson(),
            new JsonSerializerOptions { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals })!;

        Assert.Equal(0.933, back.Metrics["test_accuracy"]);
        Assert.Equal(0.933, back.EpochHistory[0].MetricsOrEmpty["test_accuracy"]);
    }
}
